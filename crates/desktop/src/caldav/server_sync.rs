//! The sync of one server's bookings to the account's collection(s), on the server's live
//! session: the syncers are made on its first connection, then `caldav::follow` runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use gpubook_client::caldav::{self, CaldavError, Collection, SyncNote, Syncer};
use gpubook_client::ical::{CalendarContext, Scope};
use gpubook_client::live::{self, LiveEvent};
use gpubook_client::secrets::Secret;
use gpubook_client::Connection;
use tokio::sync::{mpsc, Notify};

use super::{sentence, Caldav, CaldavAccount, Subscribe, SyncState};

/// The sync of one server's bookings to the account's collection(s).
pub(super) struct ServerSync {
    pub(super) caldav: Caldav,
    pub(super) generation: u64,
    pub(super) id: String,
    /// Follows the server's live session.
    pub(super) subscribe: Subscribe,
    pub(super) account: CaldavAccount,
    pub(super) password: Secret,
    pub(super) with_commands: bool,
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
    pub(super) async fn run(self, stop: Arc<Notify>) {
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
            let target = Collection {
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
fn note(st: &mut SyncState, id: &str, n: SyncNote) {
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
