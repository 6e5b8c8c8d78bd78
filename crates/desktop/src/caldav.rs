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

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use gpubook_client::caldav::{self, CaldavError, FollowOptions, SyncNote, Syncer, Target};
use gpubook_client::ical::{CalendarContext, Scope};
use gpubook_client::live::{self, LiveEvent, LiveEvents};
use gpubook_client::secrets::{self, Secret, SecretError};
use gpubook_client::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use crate::error::{AppError, AppOnlyKind};
use crate::manager::Manager;

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

struct St {
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

impl std::fmt::Debug for St {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("St")
            .field("account", &self.account)
            .field("password", &self.password)
            .field("generation", &self.generation)
            .field("tasks", &self.tasks)
            .field("fatal", &self.fatal)
            .finish_non_exhaustive()
    }
}

impl St {
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
    st: Arc<Mutex<St>>,
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
            st: Arc::new(Mutex::new(St {
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

    fn stop_all(st: &mut St) {
        for (_, stop) in st.tasks.drain() {
            stop.notify_one();
        }
        st.per.clear();
        st.fatal = None;
        st.needs_password = false;
        st.last_sync = None;
    }

    fn start_all(&self, st: &mut St) {
        let ids: Vec<String> = st.servers.keys().cloned().collect();
        for id in ids {
            self.start_one(st, &id);
        }
    }

    fn start_one(&self, st: &mut St, id: &str) {
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
        let job = ServerSync {
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
    fn update(&self, generation: u64, id: &str, f: impl FnOnce(&mut St)) {
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

/// The sync of one server's bookings to the account's collection(s).
struct ServerSync {
    caldav: Caldav,
    generation: u64,
    id: String,
    /// Follows the server's live session.
    subscribe: Subscribe,
    account: CaldavAccount,
    password: Secret,
    with_commands: bool,
}

/// Why the syncers could not be made.
enum OpenError {
    /// The server was removed.
    Gone,
    /// The server cannot be reached now, or the state is locked for a moment: try again.
    Again(String),
    /// Waiting cannot fix it.
    Fatal(CaldavError),
}

impl ServerSync {
    async fn run(self, stop: Arc<Notify>) {
        // The syncers are made on a connection of the server's session; a state the CLI holds
        // for a moment is tried again on the live session's schedule.
        let mut failures = 0;
        let mut syncers = loop {
            let r = tokio::select! {
                _ = stop.notified() => return,
                r = self.open() => r,
            };
            match r {
                Ok(s) => break s,
                Err(OpenError::Gone) => return,
                Err(OpenError::Fatal(e)) => return self.fatal(&e),
                Err(OpenError::Again(why)) => {
                    let busy = why.contains("already syncs");
                    self.caldav.update(self.generation, &self.id, |st| {
                        if let Some(p) = st.per.get_mut(&self.id) {
                            // An unreachable agent is the server list's business, not the
                            // calendar's; a locked state is.
                            p.waiting = busy.then(|| sentence(&why));
                        }
                    });
                    failures += 1;
                    tokio::select! {
                        _ = stop.notified() => return,
                        _ = tokio::time::sleep(live::outage_step(failures)) => {}
                    }
                }
            }
        };
        let pending: BTreeMap<String, usize> = syncers
            .iter()
            .map(|s| (s.url().to_string(), s.pending()))
            .collect();
        self.caldav.update(self.generation, &self.id, |st| {
            if let Some(p) = st.per.get_mut(&self.id) {
                p.pending = pending;
                p.waiting = None;
            }
        });
        let Some(events) = (self.subscribe)() else {
            return;
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let caldav = self.caldav.clone();
        let (generation, id) = (self.generation, self.id.clone());
        let notes = tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                caldav.update(generation, &id, |st| note(st, &id, n));
            }
        });
        let opts = self.caldav.opts.lock().unwrap().clone();
        let r = caldav::follow(events, &mut syncers, opts, tx, stop.notified()).await;
        let _ = notes.await;
        drop(syncers);
        if let Err(e) = r {
            self.fatal(&e);
        }
    }

    /// A connection of the server's live session, once it is up; `None` if the server went.
    async fn connection(&self) -> Option<Arc<Connection>> {
        let mut events = (self.subscribe)()?;
        loop {
            if let LiveEvent::Connected { conn, .. } = events.recv().await? {
                return Some(conn);
            }
        }
    }

    /// The syncers of this server: the person's bookings, and the lab's if wanted.
    async fn open(&self) -> Result<Vec<Syncer>, OpenError> {
        let conn = self.connection().await.ok_or(OpenError::Gone)?;
        let dir = self
            .caldav
            .state_dir
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| {
                OpenError::Fatal(CaldavError::State {
                    path: PathBuf::from("~/.local/state/gpubook"),
                    error: "no place for gpubook's state: set HOME or XDG_STATE_HOME".into(),
                })
            })?;
        let mut syncers = Vec::new();
        for (url, scope) in std::iter::once((&self.account.url, Scope::Mine))
            .chain(self.account.all_url.iter().map(|u| (u, Scope::All)))
        {
            let ctx = CalendarContext::load(&conn, scope, self.with_commands)
                .await
                .map_err(|e| OpenError::Again(e.to_string()))?;
            let target = Target {
                url: url.clone(),
                user: self.account.user.clone(),
                keep_cancelled: false,
            };
            match Syncer::open(&target, self.password.clone(), ctx, &dir) {
                Ok(s) => syncers.push(s),
                Err(e @ CaldavError::Busy { .. }) => return Err(OpenError::Again(e.to_string())),
                Err(e) => return Err(OpenError::Fatal(e)),
            }
        }
        Ok(syncers)
    }

    fn fatal(&self, e: &CaldavError) {
        let unauthorized = matches!(e, CaldavError::Unauthorized { .. });
        let message = match e {
            CaldavError::Unauthorized { url, user } => format!(
                "The CalDAV server at {url} refused the password of {user} (401 Unauthorized): type the password again."
            ),
            other => sentence(&other.to_string()),
        };
        self.caldav.update(self.generation, &self.id, |st| {
            st.fatal = Some(message);
            st.needs_password |= unauthorized;
            if let Some(p) = st.per.get_mut(&self.id) {
                p.waiting = None;
            }
        });
    }
}

/// What one sync note changes in the status.
fn note(st: &mut St, id: &str, n: SyncNote) {
    let now = Utc::now();
    let Some(p) = st.per.get_mut(id) else { return };
    match n {
        SyncNote::Reconciled { url, .. } => {
            p.pending.insert(url, 0);
            p.waiting = None;
            p.reconciled = true;
            st.last_sync = Some(now);
        }
        SyncNote::Sent { url, .. } => {
            let n = p.pending.entry(url).or_default();
            *n = n.saturating_sub(1);
            p.waiting = None;
            st.last_sync = Some(now);
        }
        SyncNote::Rejected { .. } => {}
        SyncNote::Waiting {
            url,
            error,
            pending,
            retry_in,
        } => {
            p.pending.insert(url, pending);
            p.waiting = Some(format!(
                "{} The changes wait and are sent when it answers again (next try in {} s).",
                sentence(&error),
                retry_in.as_secs().max(1)
            ));
        }
        SyncNote::AgentLost { .. } => {}
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

/// A CalDAV failure while logging in, as the UI's error; nothing was stored.
pub fn login_error(e: CaldavError) -> AppError {
    let message = match &e {
        CaldavError::Unauthorized { url, user } => format!(
            "The CalDAV server at {url} refused the password of {user} (401 Unauthorized); nothing was stored. Check the user and the password."
        ),
        other => format!(
            "{} Nothing was stored.",
            sentence(&other.to_string())
        ),
    };
    match e {
        CaldavError::Unauthorized { .. } | CaldavError::Forbidden { .. } => {
            AppError::app(AppOnlyKind::Auth, message, None)
        }
        CaldavError::BadUrl { .. }
        | CaldavError::NotACalendar { .. }
        | CaldavError::NotFound { .. } => AppError::internal(message).with_kind_invalid(),
        CaldavError::Unreachable { .. } | CaldavError::Server { .. } => {
            AppError::app(AppOnlyKind::Unreachable, message, None)
        }
        _ => AppError::internal(message),
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

impl Manager {
    /// The CalDAV sync's status.
    pub fn caldav_status(&self) -> CaldavStatus {
        self.caldav().status()
    }

    /// Calls `f` with the status every time it changes (replaces an earlier listener).
    pub fn on_caldav(&self, f: Listener) {
        self.caldav().st.lock().unwrap().listener = Some(f);
    }

    /// Where the sync keeps its state (the durable queue); `$XDG_STATE_HOME/gpubook` unless
    /// set (tests), shared with `gpubook caldav sync`.
    pub fn set_caldav_state_dir(&self, dir: PathBuf) {
        *self.caldav().state_dir.lock().unwrap() = Some(dir);
    }

    /// How the syncs pace themselves (tests shorten the waits); for syncs started after.
    pub fn set_caldav_follow_options(&self, opts: FollowOptions) {
        *self.caldav().opts.lock().unwrap() = opts;
    }

    /// Signs in to a CalDAV account: checks that `url` (and `all_url`) are calendar
    /// collections `user` may write with `password`, stores the password in the OS keyring
    /// only if `remember`, saves the account (never the password) in the settings, and starts
    /// syncing every server. On any error nothing is stored and an earlier account stays.
    pub async fn caldav_login(
        &self,
        url: &str,
        user: &str,
        all_url: Option<&str>,
        password: Secret,
        remember: bool,
    ) -> Result<CaldavStatus, AppError> {
        let invalid = |m: &str| AppError::internal(m).with_kind_invalid();
        let (url, user) = (url.trim(), user.trim());
        let all_url = all_url.map(str::trim).filter(|u| !u.is_empty());
        if url.is_empty() {
            return Err(invalid("Give the URL of your calendar collection, such as https://dav.example.org/calendars/alice/gpu/."));
        }
        if user.is_empty() {
            return Err(invalid("Give your user name on the CalDAV server."));
        }
        if password.expose().is_empty() {
            return Err(invalid("Type the password of the CalDAV account."));
        }
        if all_url.is_some_and(|a| same_url(a, url)) {
            return Err(invalid("The calendar for all of the lab's bookings must be another one than yours: they cannot share one."));
        }
        caldav::check_account(url, user, password.clone())
            .await
            .map_err(login_error)?;
        if let Some(a) = all_url {
            caldav::check_account(a, user, password.clone())
                .await
                .map_err(login_error)?;
        }
        if remember {
            let (u, n, p) = (url.to_string(), user.to_string(), password.clone());
            tokio::task::spawn_blocking(move || secrets::store_caldav_password(&u, &n, &p))
                .await
                .map_err(|e| AppError::internal(e.to_string()))?
                .map_err(|e| {
                    AppError::internal(format!(
                        "{} Nothing was stored; sign in without keeping the password to sync for this run only.",
                        sentence(&e.to_string())
                    ))
                })?;
        }
        let account = CaldavAccount {
            url: url.to_string(),
            user: user.to_string(),
            all_url: all_url.map(str::to_string),
        };
        self.save_caldav_account(Some(account.clone()))?;
        let c = self.caldav();
        {
            let mut st = c.st.lock().unwrap();
            Caldav::stop_all(&mut st);
            st.generation += 1;
            st.account = Some(account);
            st.password = Some(password);
            c.start_all(&mut st);
        }
        c.emit();
        Ok(c.status())
    }

    /// Signs out: the syncs stop, the account leaves the settings and its password the
    /// keyring. The events already in the collection stay there.
    pub async fn caldav_logout(&self) -> Result<(), AppError> {
        let c = self.caldav();
        let account = {
            let mut st = c.st.lock().unwrap();
            Caldav::stop_all(&mut st);
            st.generation += 1;
            st.password = None;
            st.account.take()
        };
        self.save_caldav_account(None)?;
        c.emit();
        if let Some(a) = account {
            let forgot = tokio::task::spawn_blocking(move || {
                secrets::forget_caldav_password(&a.url, &a.user)
            })
            .await
            .map_err(|e| AppError::internal(e.to_string()))?;
            match forgot {
                // Without a keyring nothing can have been stored in it.
                Ok(_) | Err(SecretError::Unavailable(_)) => {}
                Err(e) => {
                    return Err(AppError::internal(format!(
                        "Signed out, but the password could not be removed from the keyring: {e}"
                    )))
                }
            }
        }
        Ok(())
    }
}
