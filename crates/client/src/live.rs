//! One live session per server: a connection to an agent that stays up. When it drops (the
//! laptop slept, the Wi-Fi went, the agent restarted) it dials again, resubscribes after the
//! last event it handed over, and so gives each of its followers every event exactly once,
//! in order: nothing lost, nothing duplicated. Transport-agnostic: it is given a dial
//! function, generic over the dial's error, which says what kind of failure it is
//! ([`DialFailure`]). The app's event pump, the calendar feed, CalDAV sync and the CLI's
//! `watch` all follow a server through one of these; the app holds one per server and its
//! feed and CalDAV sync [`LiveSession::subscribe`] to it instead of dialling their own.
//!
//! # When it tries again
//!
//! Each kind of failure has its own rule:
//!
//! - **Outage** (no route, refused, the agent gone, a dropped connection): the one back-off
//!   schedule of gpubook. The n-th failure in a row waits [`FIRST_RETRY`] (0.5 s) doubled
//!   n-1 times, at most [`MAX_RETRY`] (30 s): 0.5, 1, 2, 4, 8, 16, 30, 30... s, each picked
//!   at random in its upper half (jitter), so that the clients of a restarted server do not
//!   all come back in the same instant. A connection that was up for [`STABLE`] (10 s) or
//!   more is dialled again at once when it drops, and the count starts over.
//! - **Login refused** (SSH refused the key, passphrase or password): waits for the person;
//!   tried again by itself only every [`LOGIN_RETRY`] (5 minutes), because sshd (and
//!   fail2ban) count failures against the account.
//! - **Unreachable**: a server that was up is [`LiveStatus::Reconnecting`] for its first
//!   [`UNREACHABLE_AFTER`] (10 s) down, then [`LiveStatus::Unreachable`], announced at that
//!   mark even while waiting for the next try (an agent restart is not worth a
//!   notification). One never reached is unreachable from its first failure.
//!
//! ```ignore
//! let (session, mut events) = LiveSession::start(move || dial(&endpoint, &opts, "me"), LiveOptions::default());
//! let mut status = session.status();   // Connecting, Connected, Reconnecting, LoginRefused, Unreachable
//! while let Some(e) = events.recv().await { /* LiveEvent::Connected / Pushed / Lost */ }
//! session.request(Request::Gpus(GpusRequest {})).await?; // ConnectionLost while it is down
//! ```
//!
//! A request made while the session is down, or in flight when the connection drops, fails
//! at once with [`ClientError::ConnectionLost`]; the session never retries a request itself,
//! because a change may or may not have been applied and only the caller can check.

use crate::connection::{ClientError, Connection, Pushed};
use crate::endpoint::DialError;
use crate::ssh::SshErrorKind;
use gpubook_proto::{BookingsResponse, ListRequest, Request, Response, Welcome};
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The wait after the first failure of an outage.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest wait between tries during an outage.
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// How long a connection must have stayed up for its drop to be dialled again at once.
pub const STABLE: Duration = Duration::from_secs(10);
/// How long a server that was up may be gone before it is called unreachable.
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(10);
/// How long after a refused login the session tries again by itself.
pub const LOGIN_RETRY: Duration = Duration::from_secs(300);
/// The reason given when a live connection drops.
pub const LOST: &str = "connection lost";

/// What kind of failure a dial was: it decides when the next try comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The login was refused: the person must act.
    LoginRefused,
    /// Anything waiting may fix: backed off on the schedule.
    Outage,
}

/// A dial's error, sorted by the kind of failure it is.
pub trait DialFailure: Display + Send + 'static {
    /// What kind of failure this is.
    fn failure_kind(&self) -> FailureKind;
}

impl DialFailure for ClientError {
    fn failure_kind(&self) -> FailureKind {
        FailureKind::Outage
    }
}

impl DialFailure for DialError {
    fn failure_kind(&self) -> FailureKind {
        match self {
            DialError::Deploy(d) if d.ssh_kind() == Some(SshErrorKind::Auth) => {
                FailureKind::LoginRefused
            }
            _ => FailureKind::Outage,
        }
    }
}

/// The session's state, as a person would be told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveStatus {
    /// The first connection is being made.
    Connecting,
    /// Connected and subscribed.
    Connected {
        /// The server's name, from the agent's welcome.
        server: String,
        /// True when this is a reconnection after the session was down ("back").
        back: bool,
    },
    /// Down for less than [`UNREACHABLE_AFTER`] after having been up; trying again.
    Reconnecting {
        /// Why the last try failed, or "connection lost".
        reason: String,
        /// How long until the next try.
        retry_in: Duration,
    },
    /// The login was refused; tried again by itself after [`LOGIN_RETRY`].
    LoginRefused {
        /// What the server said.
        reason: String,
        /// How long until the next try.
        retry_in: Duration,
    },
    /// Down for [`UNREACHABLE_AFTER`] or more, or never reached; trying again.
    Unreachable {
        /// Why the last try failed.
        reason: String,
        /// How long until the next try.
        retry_in: Duration,
    },
}

impl LiveStatus {
    /// Why the session is down, if it is.
    pub fn reason(&self) -> Option<&str> {
        match self {
            LiveStatus::Connecting | LiveStatus::Connected { .. } => None,
            LiveStatus::Reconnecting { reason, .. }
            | LiveStatus::LoginRefused { reason, .. }
            | LiveStatus::Unreachable { reason, .. } => Some(reason),
        }
    }
}

/// What a follower of the session receives, in order.
// Each lives for one hand-over to a follower, as [`Pushed`] does; boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// Connected (again) and subscribed; the events that follow are on `conn`. A follower
    /// that subscribes while the session is up gets this first.
    Connected {
        /// The connection, for requests (listing bookings after a reconnection).
        conn: Arc<Connection>,
        /// True when the session was up before.
        back: bool,
        /// The agent's latest event number when the subscription was made (for a follower
        /// that joins while the session is up: the last event handed over).
        latest: u64,
    },
    /// An event (each once, in order), readings, a log piece or an agent's error.
    Pushed(Pushed),
    /// The connection dropped; the session is reconnecting.
    Lost,
}

/// A follower's stream of [`LiveEvent`]s; it ends when the session is dropped.
pub type LiveEvents = mpsc::UnboundedReceiver<LiveEvent>;

/// What is remembered for the agent that welcomed: the last event number handled.
pub type Remember = Arc<dyn Fn(&Welcome) -> Option<u64> + Send + Sync>;

/// Where the first subscription starts; later ones resume after the last event seen.
#[derive(Clone, Default)]
pub enum StartAt {
    /// Only events from the first connection on.
    #[default]
    Now,
    /// Events after this number first (`After(0)`: the whole history).
    After(u64),
    /// Events after what the closure remembers for the agent that welcomed (`None`: from
    /// now); the app keeps the last event handled per server across restarts.
    Remembered(Remember),
}

impl std::fmt::Debug for StartAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartAt::Now => write!(f, "Now"),
            StartAt::After(n) => write!(f, "After({n})"),
            StartAt::Remembered(_) => write!(f, "Remembered(..)"),
        }
    }
}

/// How a session subscribes.
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// Where the first subscription starts.
    pub start: StartAt,
    /// Also hand over live GPU readings.
    pub readings: bool,
}

/// A dial: a new connection, or why there is none.
type DialFuture<E> = Pin<Box<dyn Future<Output = Result<Connection, E>> + Send>>;
/// What the session calls to connect, again and again.
type DialFn<E> = Arc<dyn Fn() -> DialFuture<E> + Send + Sync>;

/// What the session's task and its handle share. A plain mutex: never held across `.await`.
#[derive(Debug, Default)]
struct Shared {
    /// The live connection, `None` while down.
    current: Option<Arc<Connection>>,
    /// The last event number handed over (or the start point): the next subscription's
    /// `after`, and the filter that drops an event seen twice.
    last_event: Option<u64>,
    /// The followers; those whose receiver is gone are dropped at the next send.
    followers: Vec<mpsc::UnboundedSender<LiveEvent>>,
}

impl Shared {
    /// Hands `e` to every follower still listening.
    fn send(&mut self, e: &LiveEvent) {
        self.followers.retain(|f| f.send(e.clone()).is_ok());
    }
}

/// A live session with one server's agent. Dropping it stops it, closes its connection and
/// ends its followers' streams.
#[derive(Debug)]
pub struct LiveSession {
    /// Shared with the task.
    shared: Arc<Mutex<Shared>>,
    /// The session's state, for whoever shows it.
    status: watch::Receiver<LiveStatus>,
    /// The task that connects, forwards and reconnects.
    task: JoinHandle<()>,
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LiveSession {
    /// Starts a session that connects with `dial`; its first follower's stream is returned
    /// with it, so that nothing is missed. Must be called inside a tokio runtime.
    pub fn start<F, Fut, E>(dial: F, opts: LiveOptions) -> (LiveSession, LiveEvents)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Connection, E>> + Send + 'static,
        E: DialFailure,
    {
        Self::spawn(None, dial, opts)
    }

    /// Like [`LiveSession::start`], but begins with `first`, a connection already made (so
    /// that its errors could be reported as they were); `dial` is used after it drops.
    pub fn start_with<F, Fut, E>(
        first: Connection,
        dial: F,
        opts: LiveOptions,
    ) -> (LiveSession, LiveEvents)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Connection, E>> + Send + 'static,
        E: DialFailure,
    {
        Self::spawn(Some(first), dial, opts)
    }

    fn spawn<F, Fut, E>(
        first: Option<Connection>,
        dial: F,
        opts: LiveOptions,
    ) -> (LiveSession, LiveEvents)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Connection, E>> + Send + 'static,
        E: DialFailure,
    {
        let dial: DialFn<E> = Arc::new(move || Box::pin(dial()));
        let (status_tx, status) = watch::channel(LiveStatus::Connecting);
        let (tx, rx) = mpsc::unbounded_channel();
        let last_event = match opts.start {
            StartAt::After(n) => Some(n),
            StartAt::Now | StartAt::Remembered(_) => None,
        };
        let shared = Arc::new(Mutex::new(Shared {
            current: None,
            last_event,
            followers: vec![tx],
        }));
        let runner = Runner {
            dial,
            opts,
            shared: shared.clone(),
            status: status_tx,
        };
        let task = tokio::spawn(runner.run(first));
        (
            LiveSession {
                shared,
                status,
                task,
            },
            rx,
        )
    }

    /// A new follower: events from now on, preceded by [`LiveEvent::Connected`] if the
    /// session is up.
    pub fn subscribe(&self) -> LiveEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut shared = self.shared.lock().unwrap();
        if let Some(conn) = shared.current.clone() {
            let _ = tx.send(LiveEvent::Connected {
                conn,
                back: false,
                latest: shared.last_event.unwrap_or(0),
            });
        }
        shared.followers.push(tx);
        rx
    }

    /// The session's state; `changed().await` on it to follow it.
    pub fn status(&self) -> watch::Receiver<LiveStatus> {
        self.status.clone()
    }

    /// The connection if the session is up (for its welcome, or several requests).
    pub fn connection(&self) -> Option<Arc<Connection>> {
        self.shared.lock().unwrap().current.clone()
    }

    /// The number of the last event handed over (or where the session started).
    pub fn last_event(&self) -> Option<u64> {
        self.shared.lock().unwrap().last_event
    }

    /// Sends `req` on the current connection; [`ClientError::ConnectionLost`] at once if the
    /// session is down, or if the connection drops before the answer.
    pub async fn request(&self, req: Request) -> Result<Response, ClientError> {
        let conn = self.connection().ok_or(ClientError::ConnectionLost)?;
        conn.request(req).await
    }

    /// Every booking `req` matches, on the current connection (see [`LiveSession::request`]).
    pub async fn list_all(&self, req: ListRequest) -> Result<BookingsResponse, ClientError> {
        let conn = self.connection().ok_or(ClientError::ConnectionLost)?;
        conn.list_all(req).await
    }
}

/// The wait after the `failures`-th outage failure in a row, before jitter: [`FIRST_RETRY`]
/// doubled `failures - 1` times, at most [`MAX_RETRY`].
pub fn outage_step(failures: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(MAX_RETRY)
}

/// [`outage_step`] with jitter: a uniform pick in its upper half.
fn outage_wait(failures: u32) -> Duration {
    outage_step(failures).mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

/// The session's task and what it owns.
struct Runner<E> {
    /// Makes a connection.
    dial: DialFn<E>,
    /// Where to start and whether readings come.
    opts: LiveOptions,
    /// Shared with [`LiveSession`].
    shared: Arc<Mutex<Shared>>,
    /// Status for watchers.
    status: watch::Sender<LiveStatus>,
}

impl<E: DialFailure> Runner<E> {
    async fn run(self, mut first: Option<Connection>) {
        // Outage failures since the last stable connection, for the back-off.
        let mut failures: u32 = 0;
        // When the last connection dropped; `None` while never up.
        let mut down_since: Option<Instant> = None;
        loop {
            let dialled = match first.take() {
                Some(c) => Ok(c),
                None => (self.dial)().await,
            };
            let (kind, reason) = match dialled {
                Ok(conn) => match self.session(conn, down_since.is_some()).await {
                    Ok(up_for) => {
                        down_since = Some(Instant::now());
                        // A connection that stayed up a while dropped: try again at once. One
                        // that drops soon after it is made backs off like a failed dial.
                        if up_for >= STABLE {
                            failures = 0;
                            self.status.send_replace(LiveStatus::Reconnecting {
                                reason: LOST.into(),
                                retry_in: Duration::ZERO,
                            });
                            continue;
                        }
                        (FailureKind::Outage, LOST.to_string())
                    }
                    Err(e) => (FailureKind::Outage, e.to_string()),
                },
                Err(e) => (e.failure_kind(), e.to_string()),
            };
            let wait = match kind {
                FailureKind::LoginRefused => LOGIN_RETRY,
                FailureKind::Outage => {
                    failures = failures.saturating_add(1);
                    outage_wait(failures)
                }
            };
            self.wait(kind, reason, wait, down_since).await;
        }
    }

    /// Tells why the session is down and waits `wait`; a server that becomes unreachable
    /// meanwhile (down for [`UNREACHABLE_AFTER`]) is announced at that mark.
    async fn wait(
        &self,
        kind: FailureKind,
        reason: String,
        wait: Duration,
        down_since: Option<Instant>,
    ) {
        let now = Instant::now();
        let wake = now + wait;
        let unreachable_at = down_since.map(|d| d + UNREACHABLE_AFTER);
        let status = |reason: String, retry_in: Duration, at: Instant| match kind {
            FailureKind::LoginRefused => LiveStatus::LoginRefused { reason, retry_in },
            FailureKind::Outage if unreachable_at.is_none_or(|u| at >= u) => {
                LiveStatus::Unreachable { reason, retry_in }
            }
            FailureKind::Outage => LiveStatus::Reconnecting { reason, retry_in },
        };
        self.status.send_replace(status(reason.clone(), wait, now));
        if let Some(mark) = unreachable_at.filter(|&u| u > now && u < wake) {
            if kind == FailureKind::Outage {
                tokio::time::sleep_until(mark).await;
                self.status
                    .send_replace(status(reason, wake - Instant::now(), mark));
            }
        }
        tokio::time::sleep_until(wake).await;
    }

    /// Subscribes on `conn` and forwards until it drops: `Ok(how long it was up)`, or `Err`
    /// if the subscription itself failed.
    async fn session(&self, conn: Connection, back: bool) -> Result<Duration, ClientError> {
        let after = {
            let last = self.shared.lock().unwrap().last_event;
            match (&self.opts.start, last) {
                (StartAt::Remembered(f), None) => f(conn.welcome()),
                _ => last,
            }
        };
        let (latest, mut rx) = conn.subscribe(after, self.opts.readings).await?;
        let up_since = Instant::now();
        let conn = Arc::new(conn);
        let server = conn.welcome().server.clone();
        {
            let mut shared = self.shared.lock().unwrap();
            shared.last_event = match after {
                // Live events only: they come after `latest`. Or the agent's log is behind
                // what was seen: it is not the log the session was following (state restored
                // from an old copy, another agent at the address), so follow this one from now.
                None => Some(latest),
                Some(a) if latest < a => Some(latest),
                Some(a) => Some(a),
            };
            shared.current = Some(conn.clone());
            shared.send(&LiveEvent::Connected { conn, back, latest });
        }
        self.status
            .send_replace(LiveStatus::Connected { server, back });
        while let Some(p) = rx.recv().await {
            let mut shared = self.shared.lock().unwrap();
            if let Pushed::Event(e) = &p {
                if shared.last_event.is_some_and(|l| e.seq <= l) {
                    continue;
                }
                shared.last_event = Some(e.seq);
            }
            shared.send(&LiveEvent::Pushed(p));
        }
        let mut shared = self.shared.lock().unwrap();
        shared.current = None;
        shared.send(&LiveEvent::Lost);
        Ok(up_since.elapsed())
    }
}

#[cfg(test)]
mod tests;
