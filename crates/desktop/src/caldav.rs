//! The CalDAV account of the settings page: the person's bookings pushed to a calendar
//! collection of their own (and optionally the lab's to a second one), kept in sync in the
//! background for as long as the app runs.
//!
//! - The account (collection URL, user, the lab's URL) lives in the settings file; the
//!   password never does: it stays in memory for this run, and in the OS keyring only with
//!   consent, under the same entry `gpubook caldav login` uses, so the CLI and the app share
//!   the account.
//! - Every server the app has is synced, each by its own `gpubook_client::caldav::follow`
//!   on the server's one live session (the manager's; no connection of its own); each
//!   server's events have their own UIDs (`<id>@<server>`), so they share the collection
//!   without touching each other's. The durable queue and the
//!   reconciles are the CLI's (`gpubook caldav sync`), state files included.
//! - What the sync does is summed up in a [`CaldavStatus`], pushed to the web view as it
//!   changes; a refused password (401) stops the sync and asks for the password again.

mod account;
mod server_sync;

pub use account::login_error;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use gpubook_client::caldav::{self, FollowOptions};
use gpubook_client::live::LiveEvents;
use gpubook_client::secrets::{self, Secret, SecretError};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// A CalDAV account as the settings file keeps it (never with its password).
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaldavAccount {
    /// The calendar collection the person's bookings go to.
    pub url: String,
    /// The user name on the CalDAV server.
    pub user: String,
    /// A second collection for all of the lab's bookings, if wanted.
    pub all_url: Option<String>,
}

/// Where the sync stands, in one word.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaldavState {
    /// No account.
    Off,
    /// Started; the first full sync has not finished yet.
    Syncing,
    /// The collection matches the bookings.
    Ok,
    /// Something is wrong: see the error.
    Error,
}

/// The sync's state as the settings page shows it.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaldavStatus {
    /// The account, when there is one.
    pub account: Option<CaldavAccount>,
    /// Where it stands.
    pub state: CaldavState,
    /// When the collection last received a change or was last reconciled (ISO UTC).
    pub last_sync: Option<String>,
    /// Changes that wait to be sent (the server is away).
    pub pending: u32,
    /// What is wrong, as a sentence.
    pub error: Option<String>,
    /// The password must be typed again (refused by the server, or not in the keyring).
    pub needs_password: bool,
}

/// Who hears of every change of the status (the Tauri shell emits "gpubook://caldav").
pub type Listener = Arc<dyn Fn(&CaldavStatus) + Send + Sync>;

/// A new follower of a server's live session; `None` once the server is gone.
pub(crate) type Subscribe = Arc<dyn Fn() -> Option<LiveEvents> + Send + Sync>;

/// How one server's sync stands.
#[derive(Debug, Default)]
struct PerServer {
    /// Changes waiting, per collection.
    pending: BTreeMap<String, usize>,
    /// The collection's server is away (a sentence); the sync keeps trying.
    waiting: Option<String>,
    /// A full reconcile finished since the start.
    reconciled: bool,
}

/// What the CalDAV sync holds between its tasks: the account, the per-server syncs and
/// their progress, and what the status shows.
struct SyncState {
    account: Option<CaldavAccount>,
    password: Option<Secret>,
    /// Raised on every login and logout: notes of older syncs are ignored.
    generation: u64,
    /// Every server of the app: how to follow its live session.
    servers: BTreeMap<String, Subscribe>,
    /// Per server syncing: what stops it.
    tasks: HashMap<String, Arc<Notify>>,
    per: BTreeMap<String, PerServer>,
    /// An error that stopped the sync (a refused password, a URL that is not a calendar).
    fatal: Option<String>,
    needs_password: bool,
    last_sync: Option<DateTime<Utc>>,
    with_commands: bool,
    listener: Option<Listener>,
}

impl std::fmt::Debug for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncState")
            .field("account", &self.account)
            .field("password", &self.password)
            .field("generation", &self.generation)
            .field("tasks", &self.tasks)
            .field("fatal", &self.fatal)
            .finish_non_exhaustive()
    }
}

impl SyncState {
    fn status(&self) -> CaldavStatus {
        let Some(account) = &self.account else {
            return CaldavStatus {
                account: None,
                state: CaldavState::Off,
                last_sync: None,
                pending: 0,
                error: None,
                needs_password: false,
            };
        };
        let pending: usize = self.per.values().flat_map(|p| p.pending.values()).sum();
        let waiting = self.per.values().find_map(|p| p.waiting.clone());
        let error = self.fatal.clone().or(waiting);
        let state = if error.is_some() {
            CaldavState::Error
        } else if !self.per.values().any(|p| p.reconciled) {
            // A server that cannot be reached shows in the server list; the calendar is in
            // sync once one server's bookings are.
            CaldavState::Syncing
        } else {
            CaldavState::Ok
        };
        CaldavStatus {
            account: Some(account.clone()),
            state,
            last_sync: self
                .last_sync
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            pending: u32::try_from(pending).unwrap_or(u32::MAX),
            error,
            needs_password: self.needs_password,
        }
    }
}

/// The app's CalDAV sync: the account, the password of this run, one task per server.
#[derive(Debug, Clone)]
pub struct Caldav {
    st: Arc<Mutex<SyncState>>,
    rt: tokio::runtime::Handle,
    state_dir: Arc<Mutex<Option<PathBuf>>>,
    opts: Arc<Mutex<FollowOptions>>,
}

impl Caldav {
    /// Nothing synced yet; `account` is the one the settings file holds.
    pub(crate) fn new(
        rt: tokio::runtime::Handle,
        account: Option<CaldavAccount>,
        with_commands: bool,
    ) -> Self {
        Self {
            st: Arc::new(Mutex::new(SyncState {
                account,
                password: None,
                generation: 0,
                servers: BTreeMap::new(),
                tasks: HashMap::new(),
                per: BTreeMap::new(),
                fatal: None,
                needs_password: false,
                last_sync: None,
                with_commands,
                listener: None,
            })),
            rt,
            state_dir: Arc::new(Mutex::new(caldav::state_dir())),
            opts: Arc::new(Mutex::new(FollowOptions::default())),
        }
    }

    /// The status now.
    pub fn status(&self) -> CaldavStatus {
        self.st.lock().unwrap().status()
    }

    fn emit(&self) {
        let (status, listener) = {
            let st = self.st.lock().unwrap();
            (st.status(), st.listener.clone())
        };
        if let Some(l) = listener {
            l(&status);
        }
    }

    /// With an account from the settings file: reads its password from the keyring and
    /// starts syncing; asks for the password when the keyring has none.
    pub(crate) fn resume(&self) {
        let Some(account) = self.st.lock().unwrap().account.clone() else {
            return;
        };
        let me = self.clone();
        self.rt.spawn(async move {
            let (url, user) = (account.url.clone(), account.user.clone());
            let got = tokio::task::spawn_blocking(move || secrets::caldav_password(&url, &user))
                .await
                .unwrap_or_else(|e| Err(SecretError::Failed(e.to_string())));
            {
                let mut st = me.st.lock().unwrap();
                if st.account.as_ref() != Some(&account) || st.password.is_some() {
                    return; // logged in or out meanwhile
                }
                match got {
                    Ok(p) => {
                        st.password = Some(p);
                        me.start_all(&mut st);
                    }
                    Err(e) => {
                        st.needs_password = matches!(e, SecretError::Missing { .. });
                        st.fatal = Some(match e {
                            SecretError::Missing { .. } => format!(
                                "The password of {} at {} is not in the keyring: type it again to sync.",
                                account.user, account.url
                            ),
                            other => format!("{}; type the password again to sync for this run.", upper_first(&other.to_string()).trim_end_matches('.')),
                        });
                    }
                }
            }
            me.emit();
        });
    }

    /// A server the app now has: synced too while an account is signed in.
    pub(crate) fn server_added(&self, id: &str, subscribe: Subscribe) {
        let mut st = self.st.lock().unwrap();
        st.servers.insert(id.to_string(), subscribe);
        if st.account.is_some() && st.password.is_some() {
            self.start_one(&mut st, id);
        }
    }

    /// A server removed from the app: its sync stops.
    pub(crate) fn server_removed(&self, id: &str) {
        {
            let mut st = self.st.lock().unwrap();
            st.servers.remove(id);
            st.per.remove(id);
            if let Some(stop) = st.tasks.remove(id) {
                stop.notify_one();
            }
        }
        self.emit();
    }

    pub(crate) fn set_with_commands(&self, on: bool) {
        self.st.lock().unwrap().with_commands = on;
    }

    fn stop_all(st: &mut SyncState) {
        for (_, stop) in st.tasks.drain() {
            stop.notify_one();
        }
        st.per.clear();
        st.fatal = None;
        st.needs_password = false;
        st.last_sync = None;
    }

    fn start_all(&self, st: &mut SyncState) {
        let ids: Vec<String> = st.servers.keys().cloned().collect();
        for id in ids {
            self.start_one(st, &id);
        }
    }

    fn start_one(&self, st: &mut SyncState, id: &str) {
        let (Some(account), Some(password), Some(subscribe)) = (
            st.account.clone(),
            st.password.clone(),
            st.servers.get(id).cloned(),
        ) else {
            return;
        };
        if let Some(old) = st.tasks.remove(id) {
            old.notify_one();
        }
        let stop = Arc::new(Notify::new());
        let generation = st.generation;
        st.tasks.insert(id.to_string(), stop.clone());
        st.per.insert(id.to_string(), PerServer::default());
        let job = server_sync::ServerSync {
            caldav: self.clone(),
            generation,
            id: id.to_string(),
            subscribe,
            account,
            password,
            with_commands: st.with_commands,
        };
        self.rt.spawn(job.run(stop));
    }

    /// Applies `f` to server `id`'s state if the sync of `generation` is still the current
    /// one, then tells the listener.
    fn update(&self, generation: u64, id: &str, f: impl FnOnce(&mut SyncState)) {
        {
            let mut st = self.st.lock().unwrap();
            if st.generation != generation || !st.tasks.contains_key(id) {
                return;
            }
            f(&mut st);
        }
        self.emit();
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// A message as a sentence: capital first, full stop last.
fn sentence(s: &str) -> String {
    let s = upper_first(s.trim());
    if s.ends_with(['.', '!', '?']) {
        s
    } else {
        format!("{s}.")
    }
}
