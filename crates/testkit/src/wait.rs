//! The one wait-until: poll a condition every few milliseconds until it holds, and fail the
//! test, naming what it waited for, once the deadline has passed. Tests wait on conditions,
//! never on fixed sleeps.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long an awaited condition may take unless a test says otherwise.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How often a condition is polled.
const EVERY: Duration = Duration::from_millis(10);

/// Polls `cond` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_within(what, DEADLINE, cond).await
}

/// Polls `cond` until it holds, failing the test after `limit`.
pub async fn wait_until_within(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    wait_for_within(what, limit, || std::future::ready(cond())).await
}

/// [`wait_until`] for a condition that is itself awaited (an HTTP request, a query).
pub async fn wait_for<F: Future<Output = bool>>(what: &str, cond: impl FnMut() -> F) {
    wait_for_within(what, DEADLINE, cond).await
}

/// [`wait_for`], failing after `limit`.
pub async fn wait_for_within<F: Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> F,
) {
    let until = Instant::now() + limit;
    while !cond().await {
        assert!(
            Instant::now() < until,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(EVERY).await;
    }
}

/// [`wait_until`] for a test without a runtime (it blocks the thread).
pub fn wait_until_blocking(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            Instant::now() < until,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(EVERY);
    }
}
