//! Maintenance on the plan: periods in which GPUs are out of service, the refusal of anything
//! booked into them, and what becomes of the bookings already there when one is made.
//!
//! When a period is made, every booking holding one of its GPUs during it is dealt with in
//! one decision, in start order:
//! - one that has not started moves, whole, to the earliest start at or after its own (and
//!   never before now) at which as many GPUs (its own first, then any with at least as much
//!   memory) are free of bookings and of maintenance for its whole length; where that start
//!   is beyond the horizon (the policy's `max_ahead`, or [`RELOCATE_HORIZON`]), it is
//!   cancelled;
//! - one that is running keeps running until the period starts: its end becomes the
//!   period's start, so its owner gets the end warning before it and its job the end signal
//!   and grace at it, as at any slot's end. A period that starts now ends it now.
//!
//! Each change carries a [`Note::Maintenance`] with the reason, so each owner is told.

use super::limits::{later, refuse_backwards, within_horizon};
use super::*;
use crate::booking::MaintenanceOutcome;
use crate::maintenance::{
    MaintenanceCause, NewMaintenance, FAULT_HOLD, MAX_OPEN_MAINTENANCE, RELOCATE_HORIZON,
};

/// Who the agent acts as when it takes a faulty GPU out of service.
pub const AGENT_USER: &str = "gpubook-agent";

impl Plan {
    /// The plan with `periods` (as loaded from storage) in force.
    pub fn with_maintenance(mut self, periods: Vec<Maintenance>) -> Self {
        for m in periods {
            self.next_maintenance = self.next_maintenance.max(m.id.0.saturating_add(1));
            self.block(&m);
            self.maintenance.insert(m.id, m);
        }
        self
    }

    /// Every maintenance period, by number.
    pub fn maintenance(&self) -> impl Iterator<Item = &Maintenance> {
        self.maintenance.values()
    }

    /// One maintenance period.
    pub fn maintenance_period(&self, id: MaintenanceId) -> Option<&Maintenance> {
        self.maintenance.get(&id)
    }

    /// The maintenance periods that take one of `gpus` out of service during `interval`.
    pub fn maintenance_in_way(&self, gpus: &[GpuUuid], interval: &Interval) -> Vec<&Maintenance> {
        let mut ids = BTreeSet::new();
        for g in gpus {
            if let Some(tl) = self.blocked.get(g) {
                ids.extend(tl.overlapping(interval, None));
            }
        }
        ids.into_iter()
            .filter_map(|id| self.maintenance.get(&MaintenanceId(id.0)))
            .collect()
    }

    /// An error saying which maintenance stands in the way, when one does.
    pub(super) fn refuse_maintenance(
        &self,
        gpus: &[GpuUuid],
        interval: &Interval,
    ) -> Result<(), PlanError> {
        let found = self.maintenance_in_way(gpus, interval);
        let Some(m) = found.first() else {
            return Ok(());
        };
        Err(PlanError::Maintenance(format!(
            "{} {} out of service for maintenance {} ({}) from {} to {}; nothing can be \
             booked into it",
            if m.whole_server {
                "the whole server is".to_string()
            } else {
                format!("GPU {}", self.gpu_names(&m.gpus))
            },
            if m.whole_server || m.gpus.len() > 1 {
                ""
            } else {
                "is"
            },
            m.id,
            m.reason,
            m.interval.start.format("%Y-%m-%d %H:%M UTC"),
            if m.open_ended() {
                "until an admin puts it back".to_string()
            } else {
                m.interval.end.format("%Y-%m-%d %H:%M UTC").to_string()
            }
        )))
    }

    /// GPU indices, "2, 3", for messages.
    fn gpu_names(&self, gpus: &[GpuUuid]) -> String {
        gpus.iter()
            .map(|u| {
                self.gpus
                    .iter()
                    .find(|g| &g.uuid == u)
                    .map_or(u.0.clone(), |g| g.index.to_string())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Takes GPUs out of service (admins only; the agent acts as one for a fault), and moves,
    /// cancels or cuts short the bookings in the way, in the same decision. The period as
    /// made, and every booking change with its note.
    pub fn add_maintenance(
        &mut self,
        actor: &Actor,
        req: NewMaintenance,
        now: DateTime<Utc>,
    ) -> Result<(Maintenance, Vec<Change>), PlanError> {
        let now = whole_seconds(now);
        if actor.role != Role::Admin {
            return Err(PlanError::NotAllowed(format!(
                "only an admin can take GPUs out of service; {} is a {}",
                actor.user, actor.role
            )));
        }
        let reason = req.reason.trim().to_string();
        if reason.is_empty() {
            return Err(PlanError::Invalid(
                "maintenance needs a reason, for the people whose bookings it moves".into(),
            ));
        }
        if reason.chars().count() > MAX_REASON {
            return Err(PlanError::Invalid(format!(
                "the reason is longer than {MAX_REASON} characters"
            )));
        }
        let open = self
            .maintenance
            .values()
            .filter(|m| m.interval.end > now)
            .count();
        if open >= MAX_OPEN_MAINTENANCE {
            return Err(PlanError::NotAllowed(format!(
                "this server already has {open} maintenance periods that have not ended, the \
                 most it keeps; end one first"
            )));
        }
        let whole_server = req.gpus.is_none();
        let gpus = match req.gpus {
            Some(g) => {
                self.check_named(&g)?;
                self.in_index_order(g)
            }
            None => self.gpus.iter().map(|g| g.uuid.clone()).collect(),
        };
        let mut interval = req.interval;
        if req.cause == MaintenanceCause::Fault {
            interval = Interval {
                start: now,
                end: later(now, FAULT_HOLD)?,
            };
        }
        refuse_backwards(&interval)?;
        within_horizon("the maintenance's end", interval.end, now)?;
        interval.start = whole_seconds(interval.start).max(now);
        interval.end = whole_seconds(interval.end);
        if interval.end <= interval.start {
            return Err(PlanError::Invalid(format!(
                "the maintenance ends ({}) before now: nothing to take out of service",
                interval.end.format("%Y-%m-%d %H:%M UTC")
            )));
        }
        let m = Maintenance {
            id: MaintenanceId(self.next_maintenance),
            gpus,
            whole_server,
            interval,
            reason,
            by: actor.user.clone(),
            cause: req.cause,
            created_at: now,
        };
        self.next_maintenance += 1;
        self.block(&m);
        self.maintenance.insert(m.id, m.clone());
        let mut changes = self.clear_way(&m, now);
        changes.extend(self.pull_forward(now));
        Ok((m, changes))
    }

    /// Ends maintenance `id` (admins only): one that has started ends now, one that has not is
    /// withdrawn. Queued requests may then move earlier. The period as it is afterwards
    /// (`None` when withdrawn) and the changes.
    pub fn end_maintenance(
        &mut self,
        actor: &Actor,
        id: MaintenanceId,
        now: DateTime<Utc>,
    ) -> Result<(Option<Maintenance>, Vec<Change>), PlanError> {
        let now = whole_seconds(now);
        if actor.role != Role::Admin {
            return Err(PlanError::NotAllowed(format!(
                "only an admin can end maintenance; {} is a {}",
                actor.user, actor.role
            )));
        }
        let m = self.maintenance.get(&id).cloned().ok_or_else(|| {
            PlanError::NotFound(format!("there is no maintenance {id} on this server"))
        })?;
        if m.interval.end <= now {
            return Err(PlanError::Invalid(format!(
                "maintenance {id} already ended at {}",
                m.interval.end.format("%Y-%m-%d %H:%M UTC")
            )));
        }
        self.unblock(&m);
        self.maintenance.remove(&id);
        let kept = if m.interval.start < now {
            let mut ended = m.clone();
            ended.interval.end = now;
            self.block(&ended);
            self.maintenance.insert(id, ended.clone());
            Some(ended)
        } else {
            None
        };
        Ok((kept, self.pull_forward(now)))
    }

    /// The open fault period taking `gpu` out of service, if any: a fault seen again is not a
    /// new period.
    pub fn open_fault(&self, gpu: &GpuUuid, now: DateTime<Utc>) -> Option<&Maintenance> {
        self.maintenance.values().find(|m| {
            m.cause == MaintenanceCause::Fault && m.interval.contains(now) && m.gpus.contains(gpu)
        })
    }

    /// Moves, cancels or cuts short every booking holding one of `m`'s GPUs during it.
    fn clear_way(&mut self, m: &Maintenance, now: DateTime<Utc>) -> Vec<Change> {
        let mut in_way: Vec<(DateTime<Utc>, BookingId)> = self
            .conflicts(&m.gpus, &m.interval, None)
            .into_iter()
            .map(|c| (c.interval.start, c.booking))
            .collect();
        in_way.sort();
        // Every booking that must move gives its room up first, so each finds the earliest
        // start as if none of them were where they were.
        for (_, id) in &in_way {
            let b = &self.bookings[id];
            if b.state == BookingState::Confirmed {
                let b = b.clone();
                self.unhold(&b);
            }
        }
        let mut changes = Vec::new();
        for (_, id) in in_way {
            let b = self.bookings[&id].clone();
            let change = match b.state {
                BookingState::Active => self.cut_short(b, m, now),
                BookingState::Confirmed => self.relocate(b, m, now),
                _ => continue,
            };
            changes.push(change);
        }
        changes
    }

    /// A running booking ends at the period's start (now, if it starts now).
    fn cut_short(&mut self, b: Booking, m: &Maintenance, now: DateTime<Utc>) -> Change {
        let before = b.interval;
        let mut new = b;
        let end = m.interval.start.max(now);
        let (kind, outcome) = if end <= now {
            new.state = BookingState::Ended;
            new.warned_end = true;
            (ChangeKind::Ended, MaintenanceOutcome::Ended)
        } else {
            new.warned_end = false;
            (ChangeKind::Changed, MaintenanceOutcome::CutShort)
        };
        // Never empty: a booking that started this very second keeps that second.
        new.interval.end = end.max(new.interval.start + Duration::seconds(1));
        new.revision += 1;
        self.store(new.clone());
        Change {
            kind,
            booking: new,
            before: Some(before),
            note: Some(note(m, outcome)),
        }
    }

    /// A booking that has not started (its GPUs already let go by the caller) moves to the
    /// earliest free start at or after its own that keeps it whole, or is cancelled when that
    /// is beyond the horizon.
    fn relocate(&mut self, b: Booking, m: &Maintenance, now: DateTime<Utc>) -> Change {
        let before = b.interval;
        let d = b.interval.duration();
        let count = b.gpus.len();
        let min_memory = b
            .gpus
            .iter()
            .filter_map(|u| self.gpus.iter().find(|g| &g.uuid == u))
            .map(|g| g.memory_total)
            .min()
            .unwrap_or(0);
        // Its own GPUs first, so a booking that can stay on them at the same start does.
        let mut candidates: Vec<GpuUuid> = b.gpus.clone();
        candidates.extend(
            self.gpus
                .iter()
                .filter(|g| g.memory_total >= min_memory && !b.gpus.contains(&g.uuid))
                .map(|g| g.uuid.clone()),
        );
        let horizon = self
            .policy
            .max_ahead_secs
            .map_or(RELOCATE_HORIZON, Duration::seconds);
        let last_start = now.checked_add_signed(horizon);
        let placed = self
            .place(&candidates, count, d, b.interval.start.max(now))
            .filter(|(start, _)| last_start.is_some_and(|l| *start <= l))
            .and_then(|(start, gpus)| start.checked_add_signed(d).map(|end| (start, end, gpus)));
        let mut new = b.clone();
        new.revision += 1;
        let (kind, outcome) = match placed {
            Some((start, end, gpus)) => {
                new.interval = Interval { start, end };
                new.gpus = self.in_index_order(gpus);
                new.warned_start = false;
                new.warned_end = false;
                (ChangeKind::Changed, MaintenanceOutcome::Moved)
            }
            None => {
                new.state = BookingState::Cancelled;
                (ChangeKind::Cancelled, MaintenanceOutcome::Cancelled)
            }
        };
        // `store` holds the new interval (for a moved booking) and indexes the rest.
        self.store(new.clone());
        Change {
            kind,
            booking: new,
            before: Some(before),
            note: Some(note(m, outcome)),
        }
    }

    fn block(&mut self, m: &Maintenance) {
        for g in &m.gpus {
            self.blocked.entry(g.clone()).or_default().insert(
                m.interval.start,
                BookingId(m.id.0),
                m.interval.end,
            );
        }
    }

    fn unblock(&mut self, m: &Maintenance) {
        for g in &m.gpus {
            if let Some(tl) = self.blocked.get_mut(g) {
                tl.remove(m.interval.start, BookingId(m.id.0));
            }
        }
    }
}

fn note(m: &Maintenance, outcome: MaintenanceOutcome) -> Note {
    Note::Maintenance {
        id: m.id,
        reason: m.reason.clone(),
        window: m.interval,
        outcome,
    }
}
