//! The slot timer: sleeps until the plan's next due instant (a start, an end, a warning),
//! fires the transitions, and looks again after every change. Driven by the plan, not by
//! polling; the clock is the injected one.

use crate::state::State;
use std::sync::Arc;
use std::time::Duration;

/// Longest single sleep: a wall-clock jump (suspend, NTP) is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Runs the slot timer until `shutdown` resolves.
pub async fn run(state: Arc<State>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    // The system clock never announces jumps: wait on a notifier nobody wakes.
    let never = tokio::sync::Notify::new();
    loop {
        // Listen for changes and clock jumps before looking at the plan and the clock, so one
        // that happens in between is not missed.
        let changed = state.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let jumped = state.clock.jumped().unwrap_or(&never).notified();
        tokio::pin!(jumped);
        jumped.as_mut().enable();
        let st = state.clone();
        match tokio::task::spawn_blocking(move || st.tick()).await {
            Ok(Ok(events)) => {
                for e in events {
                    eprintln!("gpubook-agent: {:?} booking {}", e.kind, e.booking.id);
                }
            }
            Ok(Err(e)) => eprintln!("gpubook-agent: slot timer: {e}"),
            Err(e) => eprintln!("gpubook-agent: slot timer task failed: {e}"),
        }
        let due = state.lock().plan.next_due();
        let now = state.clock.now();
        let wait = match due {
            Some(t) if t <= now => Duration::ZERO,
            Some(t) => (t - now).to_std().unwrap_or(MAX_SLEEP).min(MAX_SLEEP),
            None => MAX_SLEEP,
        };
        // The plan works in whole seconds: wait a little past the instant, and never spin.
        let wait = wait.max(Duration::from_millis(5)) + Duration::from_millis(5);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut changed => {}
            _ = &mut jumped => {}
            _ = &mut shutdown => return,
        }
    }
}
