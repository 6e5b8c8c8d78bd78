//! A link to one server's agent that stays up: when the connection drops (the laptop slept,
//! the Wi-Fi went, the agent restarted) it dials again with exponential backoff and jitter,
//! resubscribes from the last event number it saw, and so hands its consumer every event
//! exactly once, in order. Transport-agnostic: it is given a dial function.
//!
//! ```ignore
//! let (link, mut pushed) = Link::start(move || dial(&endpoint, &opts, "my-app"), LinkOptions::default());
//! let mut status = link.status();        // Connecting, Connected, Unreachable{reason}, ...
//! while let Some(p) = pushed.recv().await { /* Pushed::Event / Readings / Error */ }
//! link.request(Request::Gpus(GpusRequest {})).await?; // ConnectionLost while it is down
//! ```
//!
//! A request made while the link is down, or in flight when the connection drops, fails at
//! once with [`ClientError::ConnectionLost`]; the link never retries a request itself,
//! because a change may or may not have been applied and only the caller can check.

use crate::connection::{ClientError, Connection, Pushed};
use gpubook_proto::{BookingsResponse, ListRequest, Request, Response};
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The link's state, as a person would be told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStatus {
    /// The first connection is being made.
    Connecting,
    /// Connected and subscribed.
    Connected {
        /// The server's name, from the agent's welcome.
        server: String,
        /// True when this is a reconnection after the link was down ("back").
        back: bool,
    },
    /// Not connected; another try comes after `retry_in`.
    Unreachable {
        /// Why the last try failed, or "connection lost".
        reason: String,
        /// How long until the next try.
        retry_in: Duration,
    },
}

/// How a link subscribes and retries.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Hand over events after this number first (`Some(0)`: the whole history); `None`: only
    /// events from the first connection on.
    pub after: Option<u64>,
    /// Also hand over live GPU readings.
    pub readings: bool,
    /// The wait before the second try after a failure; it doubles with each failure.
    pub first_retry: Duration,
    /// The longest wait between tries.
    pub max_retry: Duration,
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            after: None,
            readings: false,
            first_retry: Duration::from_millis(500),
            max_retry: Duration::from_secs(30),
        }
    }
}

/// How long a connection must have stayed up for its drop to be retried at once.
const STABLE: Duration = Duration::from_secs(10);
/// The reason given when a live connection drops.
const LOST: &str = "connection lost";

/// A dial: a new connection, or why there is none (shown in [`LinkStatus::Unreachable`]).
type DialFuture = Pin<Box<dyn Future<Output = Result<Connection, String>> + Send>>;
/// What the link calls to connect, again and again.
type DialFn = Arc<dyn Fn() -> DialFuture + Send + Sync>;

/// A reconnecting link to one agent. Dropping it stops it and closes its connection.
#[derive(Debug)]
pub struct Link {
    /// The live connection, `None` while down. A plain mutex: held only to clone the `Arc`.
    current: Arc<Mutex<Option<Arc<Connection>>>>,
    /// The link's state, for whoever shows it.
    status: watch::Receiver<LinkStatus>,
    /// The last event number handed over (or the start point).
    last_event: Arc<Mutex<Option<u64>>>,
    /// The task that connects, forwards and reconnects.
    task: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    /// Starts a link that connects with `dial`; events (and readings, if asked) arrive on the
    /// returned channel. Must be called inside a tokio runtime.
    pub fn start<F, Fut, E>(dial: F, opts: LinkOptions) -> (Link, mpsc::UnboundedReceiver<Pushed>)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Connection, E>> + Send + 'static,
        E: Display,
    {
        Self::spawn(None, dial, opts)
    }

    /// Like [`Link::start`], but begins with `first`, a connection already made (so that its
    /// errors could be reported as they were); `dial` is used after it drops.
    pub fn start_with<F, Fut, E>(
        first: Connection,
        dial: F,
        opts: LinkOptions,
    ) -> (Link, mpsc::UnboundedReceiver<Pushed>)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Connection, E>> + Send + 'static,
        E: Display,
    {
        Self::spawn(Some(first), dial, opts)
    }

    fn spawn<F, Fut, E>(
        first: Option<Connection>,
        dial: F,
        opts: LinkOptions,
    ) -> (Link, mpsc::UnboundedReceiver<Pushed>)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Connection, E>> + Send + 'static,
        E: Display,
    {
        let dial: DialFn = Arc::new(move || {
            let fut = dial();
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        });
        let (status_tx, status) = watch::channel(LinkStatus::Connecting);
        let (tx, rx) = mpsc::unbounded_channel();
        let current = Arc::new(Mutex::new(None));
        let last_event = Arc::new(Mutex::new(opts.after));
        let runner = Runner {
            dial,
            opts,
            current: current.clone(),
            last_event: last_event.clone(),
            status: status_tx,
            tx,
        };
        let task = tokio::spawn(runner.run(first));
        (
            Link {
                current,
                status,
                last_event,
                task,
            },
            rx,
        )
    }

    /// The link's state; `changed().await` on it to follow it.
    pub fn status(&self) -> watch::Receiver<LinkStatus> {
        self.status.clone()
    }

    /// The connection if the link is up (for its welcome, or several requests).
    pub fn connection(&self) -> Option<Arc<Connection>> {
        self.current.lock().unwrap().clone()
    }

    /// The number of the last event handed over (or where the link started).
    pub fn last_event(&self) -> Option<u64> {
        *self.last_event.lock().unwrap()
    }

    /// Sends `req` on the current connection; [`ClientError::ConnectionLost`] at once if the
    /// link is down, or if the connection drops before the answer.
    pub async fn request(&self, req: Request) -> Result<Response, ClientError> {
        let conn = self.connection().ok_or(ClientError::ConnectionLost)?;
        conn.request(req).await
    }

    /// Every booking `req` matches, on the current connection (see [`Link::request`]).
    pub async fn list_all(&self, req: ListRequest) -> Result<BookingsResponse, ClientError> {
        let conn = self.connection().ok_or(ClientError::ConnectionLost)?;
        conn.list_all(req).await
    }
}

/// The link's task and what it owns.
struct Runner {
    /// Makes a connection.
    dial: DialFn,
    /// Subscription and backoff.
    opts: LinkOptions,
    /// Shared with [`Link`]: the live connection.
    current: Arc<Mutex<Option<Arc<Connection>>>>,
    /// Shared with [`Link`]: the last event number handed over; the next subscription's
    /// `after`, and the filter that drops an event seen twice.
    last_event: Arc<Mutex<Option<u64>>>,
    /// Status for watchers.
    status: watch::Sender<LinkStatus>,
    /// Events and readings for the consumer.
    tx: mpsc::UnboundedSender<Pushed>,
}

impl Runner {
    async fn run(self, mut first: Option<Connection>) {
        // Failed tries since the last good connection, for the backoff.
        let mut failures: u32 = 0;
        let mut was_up = false;
        loop {
            let conn = match first.take() {
                Some(c) => Ok(c),
                None => (self.dial)().await,
            };
            let reason = match conn {
                Ok(conn) => match self.session(conn, was_up).await {
                    Ok(up_for) => {
                        was_up = true;
                        // A connection that stayed up a while dropped: try again at once.
                        // One that drops soon after it is made backs off like a failed dial.
                        if up_for >= STABLE {
                            failures = 0;
                            self.status.send_replace(LinkStatus::Unreachable {
                                reason: LOST.into(),
                                retry_in: Duration::ZERO,
                            });
                            continue;
                        }
                        LOST.to_string()
                    }
                    Err(e) => e.to_string(),
                },
                Err(reason) => reason,
            };
            failures = failures.saturating_add(1);
            let wait = self.backoff(failures);
            self.status.send_replace(LinkStatus::Unreachable {
                reason,
                retry_in: wait,
            });
            tokio::time::sleep(wait).await;
        }
    }

    /// Subscribes on `conn` and forwards until it drops: `Ok(how long it was up)`, or `Err`
    /// if the subscription itself failed.
    async fn session(&self, conn: Connection, back: bool) -> Result<Duration, ClientError> {
        let after = *self.last_event.lock().unwrap();
        let (latest, mut rx) = conn.subscribe(after, self.opts.readings).await?;
        {
            let mut last = self.last_event.lock().unwrap();
            match *last {
                // Live events only: they come after `latest`.
                None => *last = Some(latest),
                // The agent's log is behind what was seen: it is not the log the link was
                // following (state restored from an old copy), so follow this one from now.
                Some(l) if latest < l => *last = Some(latest),
                Some(_) => {}
            }
        }
        let up_since = tokio::time::Instant::now();
        let conn = Arc::new(conn);
        let server = conn.welcome().server.clone();
        *self.current.lock().unwrap() = Some(conn.clone());
        self.status
            .send_replace(LinkStatus::Connected { server, back });
        while let Some(p) = rx.recv().await {
            if let Pushed::Event(e) = &p {
                let mut last = self.last_event.lock().unwrap();
                if last.is_some_and(|l| e.seq <= l) {
                    continue;
                }
                *last = Some(e.seq);
            }
            // A consumer that stopped listening is fine: requests still work.
            let _ = self.tx.send(p);
        }
        *self.current.lock().unwrap() = None;
        Ok(up_since.elapsed())
    }

    /// The wait after the `failures`-th failure in a row: doubling from `first_retry`, at most
    /// `max_retry`, with jitter (a uniform pick in its upper half) so that many clients of a
    /// restarted server do not all come back in the same instant.
    fn backoff(&self, failures: u32) -> Duration {
        let base = self
            .opts
            .first_retry
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.opts.max_retry);
        base.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(first: Duration, max: Duration) -> Runner {
        let (status, _) = watch::channel(LinkStatus::Connecting);
        let (tx, _) = mpsc::unbounded_channel();
        Runner {
            dial: Arc::new(|| Box::pin(async { Err("no".to_string()) })),
            opts: LinkOptions {
                first_retry: first,
                max_retry: max,
                ..LinkOptions::default()
            },
            current: Arc::new(Mutex::new(None)),
            last_event: Arc::new(Mutex::new(None)),
            status,
            tx,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let r = runner(Duration::from_millis(500), Duration::from_secs(30));
        for (failures, base) in [(1, 500), (2, 1000), (3, 2000), (7, 30_000), (40, 30_000)] {
            for _ in 0..50 {
                let w = r.backoff(failures).as_millis() as u64;
                assert!(w >= base / 2 && w <= base, "{failures}: {w} vs {base}");
            }
        }
    }
}
