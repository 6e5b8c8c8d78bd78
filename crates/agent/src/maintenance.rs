//! Maintenance: an admin's requests to take GPUs out of service, list the periods and end
//! one; and the agent's own taking out of a GPU that its reader reports lost or in error.
//! The plan decides (see `gpubook_core::plan`'s maintenance); the period and the booking
//! changes it causes are written in one transaction, so every owner whose booking moved,
//! was cancelled or was cut short gets an event with the reason and the new time.

use crate::handler::{visible, Caller, Context};
use crate::state::{Committed, PeriodWrite, State};
use gpubook_core::{
    Actor, Interval, Maintenance, MaintenanceCause, NewMaintenance, Role, AGENT_USER,
};
use gpubook_proto::{
    ErrorBody, ErrorKind, Event, MaintenanceRequest, MaintenanceResponse, Readings, Response,
};
use std::sync::Arc;

/// The answer to `req` for `caller`.
pub async fn answer(
    ctx: &Context,
    caller: &Caller,
    req: MaintenanceRequest,
) -> Result<Response, ErrorBody> {
    let server = ctx.server.clone();
    let respond = |maintenance: Vec<Maintenance>, events: Committed| {
        let event = events.last().map_or(0, |e| e.seq);
        let mut changed: Vec<gpubook_core::Booking> = Vec::new();
        for e in events {
            changed.retain(|b| b.id != e.booking.id);
            changed.push(visible(&caller.actor, e.booking));
        }
        Ok(Response::Maintenance(MaintenanceResponse {
            server: server.clone(),
            maintenance,
            changed,
            event,
        }))
    };
    match req {
        MaintenanceRequest::List { include_past } => {
            let now = ctx.state.clock.now();
            let inner = ctx.state.lock();
            let mut list: Vec<Maintenance> = inner
                .plan
                .maintenance()
                .filter(|m| include_past || m.interval.end > now)
                .cloned()
                .collect();
            list.sort_by_key(|m| (m.interval.start, m.id));
            respond(list, Vec::new())
        }
        MaintenanceRequest::Create {
            gpus,
            start,
            end,
            reason,
        } => {
            // A user is refused before anything they sent is looked at.
            admin_only(&caller.actor, "take GPUs out of service")?;
            let interval = Interval::new(start, end).ok_or_else(|| {
                ErrorBody::new(ErrorKind::Invalid, "the end must be after the start")
            })?;
            let gpus = match gpus {
                Some(refs) => Some(ctx.resolve(&refs)?),
                None => None,
            };
            let req = NewMaintenance {
                gpus,
                interval,
                reason,
                cause: MaintenanceCause::Admin,
            };
            let (made, events) = run(&ctx.state, caller.actor.clone(), move |plan, now, actor| {
                let (m, changes) = plan.add_maintenance(actor, req, now)?;
                Ok((Some(m.clone()), changes, vec![PeriodWrite::Put(m)]))
            })
            .await?;
            respond(made.into_iter().collect(), events)
        }
        MaintenanceRequest::End { id } => {
            admin_only(&caller.actor, "end maintenance")?;
            let (kept, events) = run(&ctx.state, caller.actor.clone(), move |plan, now, actor| {
                let (kept, changes) = plan.end_maintenance(actor, id, now)?;
                let write = match &kept {
                    Some(m) => PeriodWrite::Put(m.clone()),
                    None => PeriodWrite::Delete(id),
                };
                Ok((kept, changes, vec![write]))
            })
            .await?;
            respond(kept.into_iter().collect(), events)
        }
    }
}

/// The result of a maintenance decision: the period afterwards, the changes, the writes.
type Decided = (
    Option<Maintenance>,
    Vec<gpubook_core::Change>,
    Vec<PeriodWrite>,
);

/// Runs a maintenance decision by `actor` as one transaction, off the async threads.
async fn run(
    state: &Arc<State>,
    actor: Actor,
    decide: impl FnOnce(
            &mut gpubook_core::Plan,
            chrono::DateTime<chrono::Utc>,
            &Actor,
        ) -> Result<Decided, gpubook_core::PlanError>
        + Send
        + 'static,
) -> Result<(Option<Maintenance>, Committed), ErrorBody> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut period = None;
        let events = state.decide_periods(Some(&actor.user), |plan, now| {
            let (m, changes, writes) = decide(plan, now, &actor)?;
            period = m;
            Ok((changes, writes))
        })?;
        Ok((period, events))
    })
    .await
    .map_err(|e| ErrorBody::new(ErrorKind::Internal, format!("agent task failed: {e}")))?
}

fn admin_only(actor: &Actor, what: &str) -> Result<(), ErrorBody> {
    if actor.role == Role::Admin {
        return Ok(());
    }
    Err(ErrorBody::new(
        ErrorKind::NotAllowed,
        format!(
            "only an admin can {what}; {} is a {}",
            actor.user, actor.role
        ),
    ))
}

/// Takes every GPU that `readings` report faulty out of service, unless a fault period
/// already holds it; the bookings in the way are moved, cancelled or ended as for planned
/// maintenance, with the same events. Blocks on the disk: call it off the async threads.
pub fn take_out_faulty(state: &State, readings: &Readings) -> Vec<Event> {
    let agent = Actor {
        user: AGENT_USER.into(),
        role: Role::Admin,
    };
    let mut events = Vec::new();
    for g in readings.gpus.iter().filter(|g| g.fault.is_some()) {
        let fault = g.fault.clone().unwrap_or_default();
        let uuid = g.uuid.clone();
        // Seen again at every reading: looked up under the lock, before any transaction.
        if state
            .lock()
            .plan
            .open_fault(&uuid, state.clock.now())
            .is_some()
        {
            continue;
        }
        let decided = state.decide_periods(Some(AGENT_USER), |plan, now| {
            if plan.open_fault(&uuid, now).is_some() {
                return Ok((Vec::new(), Vec::new()));
            }
            let req = NewMaintenance {
                gpus: Some(vec![uuid.clone()]),
                interval: Interval {
                    start: now,
                    end: now + chrono::Duration::seconds(1),
                },
                reason: format!("GPU {} {fault}", g.index),
                cause: MaintenanceCause::Fault,
            };
            let (m, changes) = plan.add_maintenance(&agent, req, now)?;
            eprintln!(
                "gpubook-agent: GPU {} ({}) is {fault}: taken out of service as maintenance {} \
                 until an admin ends it",
                g.index, g.uuid, m.id
            );
            Ok((changes, vec![PeriodWrite::Put(m)]))
        });
        match decided {
            Ok(e) => events.extend(e),
            Err(e) => eprintln!(
                "gpubook-agent: GPU {} is {fault}, but it could not be taken out of service: {e}",
                g.index
            ),
        }
    }
    events
}
