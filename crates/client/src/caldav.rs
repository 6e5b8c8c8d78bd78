//! CalDAV sync: the person's bookings pushed to a calendar collection on their own server
//! (Nextcloud, Fastmail, Radicale...), and optionally the lab's bookings to a second one.
//!
//! - Writes are conditional: PUT with `If-None-Match: *` creates, PUT with `If-Match` updates,
//!   DELETE with `If-Match` removes. A 412 means the object changed on the server: it is looked
//!   at again and written over, since gpubook is the source of truth for its events.
//! - A full reconcile (PROPFIND Depth 1, then calendar-multiget for objects not seen before)
//!   runs at the start and periodically: missing events are created, stale ones (edited by
//!   hand) rewritten, gpubook's events without a booking deleted; objects whose UID is not
//!   gpubook's (`<id>@<server>`) are never touched.
//! - Between reconciles the agent's events are followed: each change is queued in the state
//!   file first, then sent. While the server is away the queue waits (durably, across
//!   restarts) and is sent when it is back; one entry per event, so nothing is duplicated.
//! - A refused password (401) stops the sync with [`CaldavError::Unauthorized`], which says
//!   how to store the right one.

mod dav;
mod discover;
mod state;
mod sync;

pub use discover::{DiscoverError, Discovery, Found, FoundCalendar};
pub use sync::{Flushed, Syncer};

use crate::connection::{ClientError, Connection, Pushed};
use crate::ical::{CalendarContext, Scope};
use crate::live::{LiveEvent, LiveEvents};
use crate::secrets::{Secret, SecretError};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Why a sync could not do what it should, each with what the person can do about it.
#[derive(Debug, Error)]
pub enum CaldavError {
    /// The collection URL cannot be used.
    #[error("{url} is not a usable CalDAV URL: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why not.
        reason: String,
    },
    /// The server refused the password (401).
    #[error("the CalDAV server at {url} refused the password of {user} (401 Unauthorized): store the right one with `gpubook caldav login --url {url} --user {user}`")]
    Unauthorized {
        /// The collection.
        url: String,
        /// The account.
        user: String,
    },
    /// The account may not use the collection (403).
    #[error(
        "the CalDAV server does not let {user} use {url} (403 Forbidden): is it their calendar?"
    )]
    Forbidden {
        /// The collection.
        url: String,
        /// The account.
        user: String,
    },
    /// Nothing is at the URL (404).
    #[error("there is no calendar at {url} (404 Not Found): check the collection's URL")]
    NotFound {
        /// The collection.
        url: String,
    },
    /// The URL is not a calendar collection.
    #[error("{url} is not a calendar collection ({why}): give the URL of a calendar, such as https://dav.example.org/calendars/USER/personal/")]
    NotACalendar {
        /// The URL.
        url: String,
        /// What it is instead.
        why: String,
    },
    /// The server could not be reached, or did not answer in time.
    #[error("cannot reach the CalDAV server at {url}: {error}")]
    Unreachable {
        /// The collection.
        url: String,
        /// Why.
        error: String,
    },
    /// The server failed (5xx, 408, 429).
    #[error("the CalDAV server answered {status} to {method} {url}: {body}")]
    Server {
        /// The request's method.
        method: String,
        /// The request's URL.
        url: String,
        /// The status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
    /// The server refused one write (a 4xx other than 401, 404 and 412).
    #[error("the CalDAV server refused {method} {url}: {status} {body}")]
    Rejected {
        /// The request's method.
        method: String,
        /// The request's URL.
        url: String,
        /// The status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
    /// The server sent something that is not CalDAV.
    #[error("the CalDAV server sent something unreadable for {url}: {what}")]
    Protocol {
        /// The request's URL.
        url: String,
        /// What was wrong.
        what: String,
    },
    /// The sync's state file could not be read or written.
    #[error("the CalDAV sync state {path}: {error}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// Another sync of the same account runs.
    #[error("another `gpubook caldav sync` already syncs {url} (its state {path} is locked)")]
    Busy {
        /// The collection.
        url: String,
        /// The state file.
        path: PathBuf,
    },
    /// The agent failed.
    #[error(transparent)]
    Agent(#[from] ClientError),
    /// The keyring failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl CaldavError {
    /// Whether waiting may help: the server is away or in trouble. The queue keeps the
    /// changes meanwhile.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CaldavError::Unreachable { .. } | CaldavError::Server { .. }
        )
    }
}

/// A CalDAV collection to sync to.
#[derive(Debug, Clone)]
pub struct Collection {
    /// The calendar collection's URL.
    pub url: String,
    /// The account's user name.
    pub user: String,
    /// Keep cancelled and denied bookings as CANCELLED events instead of deleting them.
    pub keep_cancelled: bool,
}

/// What a reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Events created.
    pub created: usize,
    /// Events rewritten (stale or edited by hand).
    pub updated: usize,
    /// Events (or duplicates) deleted.
    pub deleted: usize,
    /// Events already right.
    pub unchanged: usize,
    /// Objects that are not gpubook's, left alone.
    pub foreign: usize,
    /// Writes the server refused, with why (left for the next reconcile).
    pub rejected: Vec<String>,
}

/// What a following sync tells its caller as it goes.
#[derive(Debug, Clone)]
pub enum SyncNote {
    /// A full reconcile of the collection at `url` finished.
    Reconciled {
        /// The collection.
        url: String,
        /// What it did.
        report: Report,
    },
    /// The server now has the change to event `uid`.
    Sent {
        /// The collection.
        url: String,
        /// The event.
        uid: String,
    },
    /// The server refused a change; the next reconcile tries again.
    Rejected {
        /// The collection.
        url: String,
        /// The event.
        uid: String,
        /// Why.
        error: String,
    },
    /// The server is away; `pending` changes wait, next try after `retry_in`.
    Waiting {
        /// The collection.
        url: String,
        /// Why.
        error: String,
        /// Changes queued.
        pending: usize,
        /// When the next try is.
        retry_in: Duration,
    },
    /// The connection to the agent was lost; reconnecting.
    AgentLost {
        /// Why.
        error: String,
    },
}

/// How a following sync paces itself.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Time between full reconciles.
    pub reconcile_every: Duration,
    /// First wait after the CalDAV server was away; doubled up to `retry_max`. By default
    /// the live session's schedule ([`crate::live::FIRST_RETRY`] to
    /// [`crate::live::MAX_RETRY`]); the agent's own reconnection is the session's.
    pub retry_min: Duration,
    /// Longest wait between tries.
    pub retry_max: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            reconcile_every: Duration::from_secs(15 * 60),
            retry_min: crate::live::FIRST_RETRY,
            retry_max: crate::live::MAX_RETRY,
        }
    }
}

/// Every booking the syncers' scopes need, in one listing.
async fn list_for(
    conn: &Connection,
    syncers: &[Syncer],
) -> Result<Vec<gpubook_core::Booking>, ClientError> {
    let scope = if syncers.iter().any(|s| s.context().scope == Scope::All) {
        Scope::All
    } else {
        Scope::Mine
    };
    let ctx = CalendarContext {
        scope,
        ..syncers[0].context().clone()
    };
    ctx.bookings(conn).await
}

/// One sync of each collection and exit (`--once`, cron): the queue left by an earlier run is
/// sent, then a full reconcile against the agent's bookings.
pub async fn sync_once(
    conn: &Connection,
    syncers: &mut [Syncer],
) -> Result<Vec<Report>, CaldavError> {
    if syncers.is_empty() {
        return Ok(Vec::new());
    }
    let bookings = list_for(conn, syncers).await?;
    let mut reports = Vec::new();
    for s in syncers.iter_mut() {
        s.flush().await?;
        reports.push(s.reconcile(&bookings).await?);
    }
    Ok(reports)
}

/// Per syncer, while following: whether it must reconcile and when it may try again.
#[derive(Debug)]
struct Health {
    /// A reconcile is owed (the start, a tick, or the server coming back).
    reconcile: bool,
    /// Not before this.
    retry_at: Option<Instant>,
    /// The wait after the next failure.
    backoff: Duration,
}

/// Follows the agent's events from a live session's stream (see [`crate::live`]) and keeps
/// every collection in step until `shutdown`, the session's end, or an error that waiting
/// cannot fix (a refused password, a URL that is not a calendar). Each (re)connection of the
/// session owes a reconcile; a lost agent is the session's to bring back.
pub async fn follow(
    mut events: LiveEvents,
    syncers: &mut [Syncer],
    opts: FollowOptions,
    notes: mpsc::UnboundedSender<SyncNote>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CaldavError> {
    if syncers.is_empty() {
        return Ok(());
    }
    tokio::pin!(shutdown);
    let mut health: Vec<Health> = syncers
        .iter()
        .map(|_| Health {
            reconcile: true,
            retry_at: None,
            backoff: opts.retry_min,
        })
        .collect();
    // The queue an earlier run left is sent first: it needs no agent.
    for (s, h) in syncers.iter_mut().zip(health.iter_mut()) {
        if s.pending() > 0 {
            flush(s, h, &opts, &notes).await?;
        }
    }
    let mut conn: Option<Arc<Connection>> = None;
    let mut next_tick = Instant::now() + opts.reconcile_every;
    loop {
        let now = Instant::now();
        if let Some(conn) = &conn {
            // Owed reconciles and retries that are due now.
            if now >= next_tick {
                next_tick = now + opts.reconcile_every;
                for h in health.iter_mut() {
                    h.reconcile = true;
                }
            }
            if health
                .iter()
                .any(|h| h.reconcile && h.retry_at.is_none_or(|t| t <= now))
            {
                match list_for(conn, syncers).await {
                    Ok(bookings) => {
                        for (s, h) in syncers.iter_mut().zip(health.iter_mut()) {
                            if h.reconcile && h.retry_at.is_none_or(|t| t <= now) {
                                reconcile(s, h, &bookings, &opts, &notes).await?;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = notes.send(SyncNote::AgentLost {
                            error: e.to_string(),
                        });
                        // Listed again after a while, or at the next connection.
                        for h in health.iter_mut().filter(|h| h.reconcile) {
                            h.retry_at = Some(now + opts.retry_min);
                        }
                    }
                }
            }
        }
        for (s, h) in syncers.iter_mut().zip(health.iter_mut()) {
            if h.reconcile || h.retry_at.is_none_or(|t| t > now) {
                continue;
            }
            if s.pending() > 0 {
                flush(s, h, &opts, &notes).await?;
            } else {
                h.retry_at = None;
            }
        }
        let wake = health
            .iter()
            .filter_map(|h| h.retry_at)
            .chain(std::iter::once(next_tick))
            .min()
            .unwrap_or(next_tick);
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep_until(wake) => {}
            e = events.recv() => match e {
                // The session is gone (its server removed): nothing more to follow.
                None => return Ok(()),
                Some(LiveEvent::Connected { conn: c, .. }) => {
                    conn = Some(c);
                    // Whatever happened while the agent was away is caught up by a reconcile.
                    for h in health.iter_mut() {
                        h.reconcile = true;
                        h.retry_at = None;
                    }
                    next_tick = Instant::now() + opts.reconcile_every;
                }
                Some(LiveEvent::Lost) => {
                    conn = None;
                    let _ = notes.send(SyncNote::AgentLost {
                        error: crate::live::LOST.into(),
                    });
                }
                Some(LiveEvent::Pushed(Pushed::Event(e))) => {
                    for (s, h) in syncers.iter_mut().zip(health.iter_mut()) {
                        if s.queue(&e.booking)? && h.retry_at.is_none() {
                            flush(s, h, &opts, &notes).await?;
                        }
                    }
                }
                Some(LiveEvent::Pushed(Pushed::Error(e))) => {
                    let _ = notes.send(SyncNote::AgentLost { error: e.message.clone() });
                }
                Some(LiveEvent::Pushed(Pushed::Readings(_) | Pushed::Log(_))) => {}
            },
        }
    }
}

async fn reconcile(
    s: &mut Syncer,
    h: &mut Health,
    bookings: &[gpubook_core::Booking],
    opts: &FollowOptions,
    notes: &mpsc::UnboundedSender<SyncNote>,
) -> Result<(), CaldavError> {
    match s.reconcile(bookings).await {
        Ok(report) => {
            healthy(h, opts);
            let _ = notes.send(SyncNote::Reconciled {
                url: s.url().to_string(),
                report,
            });
            Ok(())
        }
        Err(e) if e.is_transient() => {
            away(s, h, &e, opts, notes);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

async fn flush(
    s: &mut Syncer,
    h: &mut Health,
    opts: &FollowOptions,
    notes: &mpsc::UnboundedSender<SyncNote>,
) -> Result<(), CaldavError> {
    match s.flush().await {
        Ok(f) => {
            let was_away = h.retry_at.is_some();
            healthy(h, opts);
            // Back after being away: a reconcile catches anything the queue could not say.
            h.reconcile |= was_away;
            for uid in f.sent {
                let _ = notes.send(SyncNote::Sent {
                    url: s.url().to_string(),
                    uid,
                });
            }
            for (uid, error) in f.rejected {
                let _ = notes.send(SyncNote::Rejected {
                    url: s.url().to_string(),
                    uid,
                    error,
                });
            }
            Ok(())
        }
        Err(e) if e.is_transient() => {
            away(s, h, &e, opts, notes);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn healthy(h: &mut Health, opts: &FollowOptions) {
    h.reconcile = false;
    h.retry_at = None;
    h.backoff = opts.retry_min;
}

fn away(
    s: &Syncer,
    h: &mut Health,
    e: &CaldavError,
    opts: &FollowOptions,
    notes: &mpsc::UnboundedSender<SyncNote>,
) {
    let wait = h.backoff;
    h.retry_at = Some(Instant::now() + wait);
    h.backoff = (h.backoff * 2).min(opts.retry_max);
    let _ = notes.send(SyncNote::Waiting {
        url: s.url().to_string(),
        error: e.to_string(),
        pending: s.pending(),
        retry_in: wait,
    });
}

/// Checks `url` as a calendar collection that `user` may use with `password`, as `gpubook
/// caldav login` does before storing the password.
pub async fn check_account(url: &str, user: &str, password: Secret) -> Result<(), CaldavError> {
    dav::Dav::new(url, user, password)?.check().await
}

/// Where a person's gpubook state lives: `$XDG_STATE_HOME/gpubook`, else
/// `~/.local/state/gpubook` (`%LOCALAPPDATA%\gpubook` on Windows); `None` without a home.
pub fn state_dir() -> Option<PathBuf> {
    crate::places::state_home().map(|d| d.join("gpubook"))
}
