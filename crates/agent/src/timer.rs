//! The slot timer: sleeps until the plan's next due instant (a start, an end, a warning),
//! fires the transitions, and looks again after every change. Driven by the plan, not by
//! polling; the clock is the injected one.

use crate::state::State;
use std::sync::Arc;
use std::time::Duration;

/// Longest single sleep: a wall-clock jump (suspend, NTP) is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// After a tick that could not be written (a full disk): how long until the next try. Jobs
/// are still stopped at their ends meanwhile, from the plan in memory (see `jobs`).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// The same failure is said again in the log at most this often.
const REPEAT_FAILURE_AFTER: Duration = Duration::from_secs(60);

/// Runs the slot timer until `shutdown` resolves.
pub async fn run(state: Arc<State>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    // The system clock never announces jumps: wait on a notifier nobody wakes.
    let never = tokio::sync::Notify::new();
    // The last failure said in the log, and when: a full disk must not fill the log too.
    let mut said: Option<(String, std::time::Instant)> = None;
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
        let failure = match tokio::task::spawn_blocking(move || st.tick()).await {
            Ok(Ok(events)) => {
                for e in events {
                    eprintln!("gpubook-agent: {:?} booking {}", e.kind, e.booking.id);
                }
                None
            }
            Ok(Err(e)) => Some(format!(
                "slot timer: {e}; jobs are still stopped at their slots' ends, from the plan \
                 in memory, and the ends are recorded when the store can take them"
            )),
            // A panic in a tick: the timer goes on (the next tick may pass).
            Err(e) => Some(format!("slot timer: a tick failed: {e}")),
        };
        if let Some(why) = &failure {
            let repeat = said
                .as_ref()
                .is_some_and(|(w, at)| w == why && at.elapsed() < REPEAT_FAILURE_AFTER);
            if !repeat {
                eprintln!("gpubook-agent: {why}");
                said = Some((why.clone(), std::time::Instant::now()));
            }
        } else if said.take().is_some() {
            eprintln!("gpubook-agent: slot timer: the state can be written again");
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
        let wait = if failure.is_some() {
            wait.max(RETRY_AFTER_FAILURE)
        } else {
            wait
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut changed => {}
            _ = &mut jumped => {}
            _ = &mut shutdown => return,
        }
    }
}
