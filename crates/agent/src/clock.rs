//! The agent's clock, injectable so tests of time are deterministic.

use chrono::{DateTime, Utc};
use std::sync::Mutex;
use tokio::sync::Notify;

/// What time it is, and a way to hear that the time jumped (test clocks only).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
    /// Resolves when the clock was set; the system clock never resolves it.
    fn jumped(&self) -> Option<&Notify> {
        None
    }
}

/// The system's clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told, for tests.
#[derive(Debug)]
pub struct ManualClock {
    /// The time it shows. A plain mutex: never held across an await.
    now: Mutex<DateTime<Utc>>,
    /// Woken on every change, so the slot timer looks again.
    jumped: Notify,
}

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(now),
            jumped: Notify::new(),
        }
    }

    /// Moves the clock to `t`.
    pub fn set(&self, t: DateTime<Utc>) {
        *self.now.lock().unwrap() = t;
        self.jumped.notify_waiters();
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: chrono::Duration) {
        let t = self.now() + d;
        self.set(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap()
    }
    fn jumped(&self) -> Option<&Notify> {
        Some(&self.jumped)
    }
}
