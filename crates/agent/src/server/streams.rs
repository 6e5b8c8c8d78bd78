//! What a connection streams: a job's log as it is written, and events to a subscriber,
//! caught up from the store first.

use super::bounds::Outbox;
use super::error;
use crate::handler::{Caller, Context};
use gpubook_core::BookingId;
use gpubook_proto::{
    AgentFrame, ErrorKind, LogPiece, Response, SubscribeRequest, SubscribedResponse,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Events read from the store per batch when a subscriber catches up.
const BACKLOG_BATCH: usize = 500;

/// How often a followed log is looked at for more, besides on every event.
const LOG_POLL: Duration = Duration::from_millis(250);

/// Pushes booking `id`'s job log from byte `next` on to `tx` as it is written, until the job
/// is over and its log read to the end (the last piece says `done`), the booking is gone, or
/// the client. The caller was allowed to read the log when the follow began.
pub(super) async fn follow_log(ctx: Arc<Context>, id: BookingId, mut next: u64, out: Outbox) {
    let mut events = ctx.state.events.subscribe();
    loop {
        let Ok((owner, done)) = ctx.log_state(id) else {
            return;
        };
        let Ok((data, to, at_end)) = ctx.read_log(id, &owner, next, done).await else {
            return;
        };
        let finished = done && at_end;
        if !data.is_empty() || finished {
            let piece = LogPiece {
                id,
                offset: next,
                data,
                next: to,
                done: finished,
            };
            if out.push(&AgentFrame::Log(piece)).is_err() {
                return;
            }
        }
        next = to;
        if finished {
            return;
        }
        if !at_end {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(LOG_POLL) => {}
            // Any event: look again now (a job's end comes as one).
            r = events.recv() => {
                if matches!(r, Err(broadcast::error::RecvError::Closed)) {
                    return;
                }
            }
        }
    }
}

/// `e` as a client speaking protocol 1.`minor` can read it: before 1.4 a client cannot parse a
/// maintenance note, so it gets the booking's change without it.
fn for_minor(mut e: gpubook_proto::Event, minor: u32) -> gpubook_proto::Event {
    if minor < 4 && matches!(e.note, Some(gpubook_core::Note::Maintenance { .. })) {
        e.note = None;
    }
    e
}

/// Events after `s.after` from the store, then live ones, each exactly once, in order.
pub(super) async fn subscribe(
    ctx: Arc<Context>,
    caller: Caller,
    minor: u32,
    id: u64,
    s: SubscribeRequest,
    out: Outbox,
) {
    // Listen before reading the backlog, so nothing committed in between is missed.
    let mut live = ctx.state.events.subscribe();
    let latest = {
        let inner = ctx.state.lock();
        inner.store.latest_seq().unwrap_or(0)
    };
    let answer = AgentFrame::Response {
        id,
        body: Response::Subscribed(SubscribedResponse { latest }),
    };
    if out.push(&answer).is_err() {
        return;
    }
    let mut last = s.after.unwrap_or(latest);
    let mut readings = ctx.readings.clone();
    loop {
        if !catch_up(&ctx, &caller, minor, &out, &mut last).await {
            return;
        }
        loop {
            tokio::select! {
                ev = live.recv() => match ev {
                    Ok(e) => {
                        if e.seq <= last {
                            continue;
                        }
                        if e.seq > last + 1 {
                            // A gap: read it from the store.
                            break;
                        }
                        last = e.seq;
                        let frame = AgentFrame::Event(for_minor(
                            crate::transfer::visible_event(&caller.actor, (*e).clone()),
                            minor,
                        ));
                        if out.push(&frame).is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                changed = readings.changed(), if s.readings => {
                    if changed.is_err() {
                        return;
                    }
                    let r = readings.borrow_and_update().clone();
                    if let Some(r) = r {
                        if out.push(&AgentFrame::Readings(r)).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Sends stored events after `last`; false when the client is gone.
async fn catch_up(
    ctx: &Arc<Context>,
    caller: &Caller,
    minor: u32,
    out: &Outbox,
    last: &mut u64,
) -> bool {
    loop {
        let batch = {
            let inner = ctx.state.lock();
            inner.store.events_after(*last, BACKLOG_BATCH)
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                let _ = out.push(&error(
                    None,
                    ErrorKind::Unavailable,
                    format!("cannot read events: {e}"),
                ));
                return false;
            }
        };
        if batch.is_empty() {
            return true;
        }
        for e in batch {
            *last = e.seq;
            let e = for_minor(crate::transfer::visible_event(&caller.actor, e), minor);
            if out.send(&AgentFrame::Event(e)).await.is_err() {
                return false;
            }
        }
    }
}
