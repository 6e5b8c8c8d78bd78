//! The report: GPU-hours per user and per GPU over a window, from the plan's bookings and the
//! few facts only the stored events know (see `gpubook_core::report`). The events are read a
//! page at a time, the state's lock let go between pages, so a report over a long history
//! never holds up bookings for long.

use crate::handler::{Caller, Context};
use gpubook_core::report::{self, Fact, FactKind};
use gpubook_core::{Booking, BookingId, Role};
use gpubook_proto::{ErrorBody, ErrorKind, EventKind, ReportRequest, ReportResponse, Response};
use std::collections::HashSet;

/// Events read under the lock at a time.
const PAGE: usize = 2000;

/// The answer to `req` for `caller`: everyone's lines for an admin, the caller's own for
/// anyone else.
pub async fn answer(
    ctx: &Context,
    caller: &Caller,
    req: ReportRequest,
) -> Result<Response, ErrorBody> {
    let window = report::window(req.from, req.to)
        .map_err(|e| ErrorBody::new(ErrorKind::Invalid, e.to_string()))?;
    let everyone = caller.actor.role == Role::Admin;
    let only = (!everyone).then(|| caller.actor.user.clone());
    let state = ctx.state.clone();
    let report = tokio::task::spawn_blocking(move || {
        let (bookings, gpus) = {
            let inner = state.lock();
            let bookings: Vec<Booking> = inner
                .plan
                .bookings()
                .filter(|b| b.interval.start < window.end)
                .cloned()
                .collect();
            (bookings, inner.plan.gpus().to_vec())
        };
        let out_of_service = out_of_service(&state, window);
        let facts = facts(&state, &bookings)?;
        let mut report = report::compute(&bookings, &facts, &gpus, window, only.as_deref());
        for line in &mut report.gpus {
            line.maintenance_secs = out_of_service.get(&line.uuid).copied().unwrap_or(0);
        }
        Ok::<_, ErrorBody>(report)
    })
    .await
    .map_err(|e| ErrorBody::new(ErrorKind::Internal, format!("agent task failed: {e}")))??;
    Ok(Response::Report(ReportResponse {
        server: ctx.server.clone(),
        everyone,
        report,
    }))
}

/// Per GPU, seconds of `window` (up to now) it spent in maintenance.
fn out_of_service(
    state: &crate::state::State,
    window: gpubook_core::Interval,
) -> std::collections::HashMap<gpubook_core::GpuUuid, i64> {
    let now = state.clock.now();
    let mut out = std::collections::HashMap::new();
    let inner = state.lock();
    for m in inner.plan.maintenance() {
        let until = m.interval.end.min(now);
        let Some(part) = gpubook_core::Interval::new(m.interval.start, until)
            .and_then(|i| i.intersection(&window))
        else {
            continue;
        };
        for g in &m.gpus {
            *out.entry(g.clone()).or_insert(0) += part.duration().num_seconds();
        }
    }
    out
}

/// The facts the stored events hold about `bookings`: cancellations, releases, the watch's
/// notes. Reads every event once, `PAGE` at a time.
fn facts(state: &crate::state::State, bookings: &[Booking]) -> Result<Vec<Fact>, ErrorBody> {
    let ids: HashSet<BookingId> = bookings.iter().map(|b| b.id).collect();
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = state.lock().store.events_after(after, PAGE).map_err(|e| {
            ErrorBody::new(
                ErrorKind::Unavailable,
                format!("the agent cannot read its events now ({e})"),
            )
        })?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        after = last.seq;
        for e in page {
            if !ids.contains(&e.booking.id) {
                continue;
            }
            let what = match (e.kind, e.before, e.note) {
                (EventKind::BookingCancelled, _, _) => FactKind::Cancelled,
                (EventKind::BookingReleased, Some(before), _) => FactKind::Released { before },
                (EventKind::Intruder | EventKind::IdleHeld, _, Some(note)) => FactKind::Note(note),
                _ => continue,
            };
            out.push(Fact {
                booking: e.booking.id,
                at: e.at,
                what,
            });
        }
    }
}
