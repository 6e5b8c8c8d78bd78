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
    loop {
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
        let jumped = async {
            match state.clock.jumped() {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.changed.notified() => {}
            _ = jumped => {}
            _ = &mut shutdown => return,
        }
    }
}
