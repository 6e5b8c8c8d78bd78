//! The changes people ask for: book, move and resize, extend, release, cancel, approve, deny, and
//! what the agent observes.

use super::contents::{check_job, check_size, check_title};
use super::limits::{later, refuse_backwards, within_horizon};
use super::*;

impl Plan {
    pub(super) fn book(
        &mut self,
        actor: &Actor,
        selection: GpuSelection,
        when: When,
        title: String,
        job: Option<JobSpec>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, PlanError> {
        check_title(&title)?;
        if let Some(j) = &job {
            check_job(j, &self.policy)?;
        }
        check_size(&title, job.as_ref())?;
        if self.next_id == u64::MAX {
            return Err(PlanError::Invalid(
                "this server has used up its booking numbers".into(),
            ));
        }
        let (candidates, count, min_memory, named) = match &selection {
            GpuSelection::Named(gpus) => {
                self.check_named(gpus)?;
                let gpus = self.in_index_order(gpus.clone());
                (gpus.clone(), gpus.len(), None, gpus)
            }
            GpuSelection::Count { count, min_memory } => {
                let eligible = self.eligible(*count, *min_memory)?;
                (eligible, *count as usize, *min_memory, Vec::new())
            }
            GpuSelection::OnNode { node, count } => {
                let on_node = self.on_node(node, *count)?;
                (on_node, *count as usize, None, Vec::new())
            }
        };
        let node = match &selection {
            GpuSelection::OnNode { node, .. } => Some(node.clone()),
            _ => None,
        };
        let (interval, gpus, asap) = match when {
            When::At(requested) => {
                let interval = self.snap(requested, now)?;
                // The first node with `count` free (a plain server is one node).
                let free: Vec<GpuUuid> = self
                    .one_node(&candidates, count)
                    .into_iter()
                    .map(|node| {
                        node.into_iter()
                            .filter(|g| self.overlapping(g, &interval, None).is_empty())
                            .filter(|g| {
                                self.maintenance_in_way(std::slice::from_ref(g), &interval)
                                    .is_empty()
                            })
                            .filter(|g| !self.outside_in_way(g, &interval))
                            .take(count)
                            .collect::<Vec<_>>()
                    })
                    .find(|free| free.len() == count)
                    .unwrap_or_default();
                if free.len() < count {
                    // What stands in the way on the nodes big enough: maintenance first (no
                    // booking moving away would free it), then what Slurm holds, then bookings.
                    let fitting = self.one_node(&candidates, count).concat();
                    self.refuse_maintenance(&fitting, &interval)?;
                    self.refuse_outside(&fitting, &interval, None)?;
                    return Err(PlanError::Conflict(
                        self.conflicts(&fitting, &interval, None),
                    ));
                }
                (interval, free, None)
            }
            When::Asap(d) => {
                let d = self.snap_duration(d)?;
                let (start, gpus) = self
                    .place(&candidates, count, d, now)
                    .expect("candidates were checked to be enough");
                let end = later(start, d)?;
                within_horizon("the first time it fits, ending", end, now)?;
                let asap = AsapRequest {
                    count: count as u32,
                    min_memory,
                    duration_secs: d.num_seconds(),
                    asked_at: now,
                    named,
                    exempt: actor.role == Role::Admin,
                    node,
                };
                (Interval { start, end }, gpus, Some(asap))
            }
        };
        let broken = self.over_policy(
            actor,
            &actor.user,
            gpus.len(),
            &interval,
            now,
            None,
            asap.is_some(),
        );
        // No user fills the store: a booking beyond the most a user may hold is refused.
        let upcoming = self.upcoming(&actor.user);
        if actor.role != Role::Admin && upcoming >= self.policy.max_upcoming() {
            return Err(PlanError::NotAllowed(format!(
                "{} already holds {upcoming} bookings that have not ended, the most the policy \
                 allows (max_upcoming); cancel one to book another",
                actor.user
            )));
        }
        // A request that would wait is refused, not queued, once its owner has the most
        // waiting that the policy allows (admins' requests never wait).
        let waiting = self.waiting(&actor.user);
        if !broken.is_empty()
            && self.policy.over_policy == OverPolicy::Approval
            && waiting >= self.policy.max_pending()
        {
            return Err(PlanError::NotAllowed(format!(
                "{} already has {waiting} request{} waiting for an admin's approval, the most \
                 the policy allows (max_pending); this one ({}) was not queued: cancel one, or \
                 wait for an answer",
                actor.user,
                if waiting == 1 { "" } else { "s" },
                reasons(&broken)
            )));
        }
        let (state, pending_reason) = match broken.first() {
            None => (BookingState::Confirmed, None),
            Some((rule, message)) => match self.policy.over_policy {
                OverPolicy::Refuse => {
                    return Err(PlanError::OverPolicy {
                        rule: *rule,
                        message: message.clone(),
                    })
                }
                OverPolicy::Approval => (BookingState::PendingApproval, Some(reasons(&broken))),
            },
        };
        let booking = Booking {
            id: BookingId(self.next_id),
            owner: actor.user.clone(),
            gpus,
            interval,
            title,
            state,
            job,
            asap,
            pending_since: pending_reason.is_some().then_some(1),
            pending_reason,
            created_at: now,
            revision: 1,
            warned_start: false,
            warned_end: false,
            run: None,
            usage: None,
        };
        self.next_id += 1;
        self.store(booking.clone());
        Ok(vec![Change {
            kind: ChangeKind::Created,
            booking,
            before: None,
            note: None,
        }])
    }

    pub(super) fn extend(
        &mut self,
        actor: &Actor,
        id: BookingId,
        end: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, PlanError> {
        let old = self.owned(actor, id)?.clone();
        if !matches!(
            old.state,
            BookingState::Confirmed | BookingState::Active | BookingState::PendingApproval
        ) {
            return Err(PlanError::Invalid(format!("booking {id} is {}", old.state)));
        }
        // The start stays exactly where it is (a queued booking's may be off the grid).
        within_horizon("the new end", end, now)?;
        let end = round_to(end, self.policy.granularity());
        if end <= old.interval.end {
            return Err(PlanError::Invalid(format!(
                "extend needs an end after the current one ({}, on the {} grid); to shorten a \
                 booking, move or release it",
                old.interval.end.format("%Y-%m-%d %H:%M UTC"),
                crate::duration::format_duration(self.policy.granularity())
            )));
        }
        let interval = Interval {
            start: old.interval.start,
            end,
        };
        self.reshape(actor, old, interval, None, now)
    }

    pub(super) fn move_booking(
        &mut self,
        actor: &Actor,
        id: BookingId,
        requested: Interval,
        new_gpus: Option<Vec<GpuUuid>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, PlanError> {
        let old = self.owned(actor, id)?.clone();
        let interval = match old.state {
            BookingState::Confirmed | BookingState::PendingApproval => self.snap(requested, now)?,
            BookingState::Active => {
                refuse_backwards(&requested)?;
                within_horizon("the new end", requested.end, now)?;
                let end = round_to(requested.end, self.policy.granularity());
                if requested.start != old.interval.start || new_gpus.is_some() {
                    return Err(PlanError::Invalid(format!(
                        "booking {id} has started: only its end can change"
                    )));
                }
                if end <= now {
                    return Err(PlanError::Invalid(format!(
                        "the new end is in the past; to end booking {id} now, release it"
                    )));
                }
                Interval {
                    start: old.interval.start,
                    end,
                }
            }
            s => return Err(PlanError::Invalid(format!("booking {id} is {s}"))),
        };
        let new_gpus = match new_gpus {
            Some(g) => {
                self.check_named(&g)?;
                Some(self.in_index_order(g))
            }
            None => None,
        };
        self.reshape(actor, old, interval, new_gpus, now)
    }

    /// Gives `old` a new interval (and GPUs), checked for conflicts and policy.
    ///
    /// A booking that holds its GPUs is held to what the change adds (see `over_policy`):
    /// beyond the policy, the change is refused. A request waiting for approval is judged
    /// afresh against its owner's limits: within them (and free of conflicts) it is confirmed
    /// at once; beyond them it keeps waiting, with the reasons that hold now.
    pub(super) fn reshape(
        &mut self,
        actor: &Actor,
        old: Booking,
        interval: Interval,
        new_gpus: Option<Vec<GpuUuid>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, PlanError> {
        let id = old.id;
        let gpus = new_gpus.unwrap_or_else(|| old.gpus.clone());
        let waiting = old.state == BookingState::PendingApproval;
        // A waiting request is judged as its owner's: an admin moving it does not grant it.
        let judge = if waiting && actor.user != old.owner {
            Actor {
                user: old.owner.clone(),
                role: Role::User,
            }
        } else {
            actor.clone()
        };
        let broken = self.over_policy(
            &judge,
            &old.owner,
            gpus.len(),
            &interval,
            now,
            Some(&old),
            false,
        );
        let mut new = old.clone();
        if waiting {
            if broken.is_empty() {
                new.state = BookingState::Confirmed;
                new.pending_reason = None;
            } else {
                new.pending_reason = Some(reasons(&broken));
            }
        }
        if new.state.holds_gpus() {
            let conflicts = self.conflicts(&gpus, &interval, Some(id));
            if !conflicts.is_empty() {
                return Err(PlanError::Conflict(conflicts));
            }
            // What the booking already had stays (maintenance made since cut it short, so
            // only a later end could reach into it); what the change adds must be free.
            self.refuse_maintenance(&gpus, &interval)?;
            self.refuse_outside(&gpus, &interval, Some(id))?;
        }
        if let (false, Some((rule, message))) = (waiting, broken.first()) {
            return Err(PlanError::OverPolicy {
                rule: *rule,
                message: format!("{message}; ask an admin to make this change"),
            });
        }
        new.interval = interval;
        new.gpus = gpus;
        // A booking placed by hand is no longer the queue's to move.
        new.asap = None;
        new.revision += 1;
        if new.interval.start != old.interval.start {
            new.warned_start = false;
        }
        if new.interval.end != old.interval.end {
            new.warned_end = false;
        }
        self.store(new.clone());
        let mut changes = vec![Change {
            kind: ChangeKind::Changed,
            booking: new,
            before: Some(old.interval),
            note: None,
        }];
        changes.extend(self.pull_forward(now));
        Ok(changes)
    }

    pub(super) fn release(
        &mut self,
        actor: &Actor,
        id: BookingId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, PlanError> {
        let b = self.owned(actor, id)?;
        if b.state != BookingState::Active {
            let hint = match b.state {
                BookingState::Confirmed | BookingState::PendingApproval => {
                    ": it has not started, cancel it instead"
                }
                _ => "",
            };
            return Err(PlanError::Invalid(format!(
                "booking {id} is {}{hint}",
                b.state
            )));
        }
        let mut new = b.clone();
        let before = new.interval;
        // Never longer than it was (a release after the end, before the timer ran), and never
        // empty (a release in the second it started).
        let one_second_in = new
            .interval
            .start
            .checked_add_signed(Duration::seconds(1))
            .unwrap_or(new.interval.start);
        new.interval.end = now.min(before.end).max(one_second_in);
        new.state = BookingState::Ended;
        new.revision += 1;
        self.store(new.clone());
        let mut changes = vec![Change {
            kind: ChangeKind::Released,
            booking: new,
            before: Some(before),
            note: None,
        }];
        changes.extend(self.pull_forward(now));
        Ok(changes)
    }

    /// Records what the agent observed about booking `id` (its job, its GPUs): `update`
    /// changes the booking, and the change is announced as `kind` with `note`. Not a person's
    /// request, so no permission or policy applies; `None` for an unknown booking.
    pub fn observe(
        &mut self,
        id: BookingId,
        kind: ChangeKind,
        note: Option<Note>,
        update: impl FnOnce(&mut Booking),
    ) -> Option<Change> {
        let mut b = self.bookings.get(&id)?.clone();
        update(&mut b);
        b.revision += 1;
        self.store(b.clone());
        Some(Change {
            kind,
            booking: b,
            before: None,
            note,
        })
    }

    /// Ends an active booking at `now` because its job ended early (the jobs issue); the same
    /// as a release by the owner, without the permission check.
    pub fn release_by_agent(&mut self, id: BookingId, now: DateTime<Utc>) -> Vec<Change> {
        let admin = Actor {
            user: "gpubook-agent".into(),
            role: Role::Admin,
        };
        self.release(&admin, id, whole_seconds(now))
            .unwrap_or_default()
    }

    pub(super) fn cancel(
        &mut self,
        actor: &Actor,
        id: BookingId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, PlanError> {
        let b = self.owned(actor, id)?;
        match b.state {
            BookingState::Confirmed | BookingState::PendingApproval => {}
            BookingState::Active => {
                return Err(PlanError::Invalid(format!(
                    "booking {id} has started: release it to end it now"
                )))
            }
            s => return Err(PlanError::Invalid(format!("booking {id} is already {s}"))),
        }
        let mut new = b.clone();
        new.state = BookingState::Cancelled;
        new.revision += 1;
        self.store(new.clone());
        let mut changes = vec![Change {
            kind: ChangeKind::Cancelled,
            booking: new,
            before: None,
            note: None,
        }];
        changes.extend(self.pull_forward(now));
        Ok(changes)
    }

    pub(super) fn approve(
        &mut self,
        actor: &Actor,
        id: BookingId,
        rev: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, PlanError> {
        let b = self.admin_target(actor, id, "approve", rev)?.clone();
        if b.interval.end <= now && b.asap.is_none() {
            return Err(PlanError::Invalid(format!(
                "booking {id}'s time has passed; it can no longer be approved"
            )));
        }
        let mut new = b.clone();
        if let Some(asap) = &b.asap {
            let (candidates, count) = self.asap_candidates(asap);
            let (start, gpus) = self
                .place(&candidates, count, asap.duration(), now)
                .ok_or_else(|| {
                    PlanError::Invalid(format!(
                        "booking {id} asks for {count} GPUs and this server no longer has them"
                    ))
                })?;
            let end = later(start, asap.duration())?;
            within_horizon("the first time it fits, ending", end, now)?;
            new.interval = Interval { start, end };
            new.gpus = gpus;
        } else {
            let conflicts = self.conflicts(&b.gpus, &b.interval, Some(id));
            if !conflicts.is_empty() {
                return Err(PlanError::Conflict(conflicts));
            }
            self.refuse_maintenance(&b.gpus, &b.interval)?;
            self.refuse_outside(&b.gpus, &b.interval, Some(id))?;
        }
        new.state = BookingState::Confirmed;
        new.pending_reason = None;
        new.revision += 1;
        self.store(new.clone());
        Ok(vec![Change {
            kind: ChangeKind::Approved,
            booking: new,
            before: Some(b.interval),
            note: None,
        }])
    }

    pub(super) fn deny(
        &mut self,
        actor: &Actor,
        id: BookingId,
        reason: Option<String>,
        rev: Option<u32>,
    ) -> Result<Vec<Change>, PlanError> {
        let b = self.admin_target(actor, id, "deny", rev)?;
        if let Some(r) = &reason {
            if r.chars().count() > MAX_REASON {
                return Err(PlanError::Invalid(format!(
                    "the reason is longer than {MAX_REASON} characters"
                )));
            }
        }
        let mut new = b.clone();
        new.state = BookingState::Denied;
        new.pending_reason = Some(reason.unwrap_or_else(|| "denied by an admin".into()));
        new.revision += 1;
        self.store(new.clone());
        Ok(vec![Change {
            kind: ChangeKind::Denied,
            booking: new,
            before: None,
            note: None,
        }])
    }

    /// The waiting booking an admin decides on, as the admin saw it.
    ///
    /// `rev` is the revision the admin saw: a booking at another one changed since (its
    /// owner moved it, say from 2 GPUs to 4), and the decision is refused with
    /// [`PlanError::Changed`], which says what it asks for now. Without `rev` (an older
    /// client), the decision is taken only while the booking is still as it was when it
    /// began to wait (`Booking::pending_since`).
    pub(super) fn admin_target(
        &self,
        actor: &Actor,
        id: BookingId,
        verb: &str,
        rev: Option<u32>,
    ) -> Result<&Booking, PlanError> {
        if actor.role != Role::Admin {
            return Err(PlanError::NotAllowed(format!(
                "only an admin can {verb} a booking; {} is a {}",
                actor.user, actor.role
            )));
        }
        let b = self.find(id)?;
        let changed = || PlanError::Changed {
            id,
            revision: b.revision,
            shape: b.shape(),
        };
        if rev.is_some_and(|r| r != b.revision) {
            return Err(changed());
        }
        if b.state != BookingState::PendingApproval {
            return Err(PlanError::Invalid(format!(
                "booking {id} is {}, not waiting for approval",
                b.state
            )));
        }
        if rev.is_none() && b.revision != b.pending_since.unwrap_or(1) {
            return Err(changed());
        }
        Ok(b)
    }
}

/// The reasons a request waits, as its owner reads them.
fn reasons(broken: &[(Rule, String)]) -> String {
    broken
        .iter()
        .map(|(_, m)| m.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}
