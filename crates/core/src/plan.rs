//! The plan: every booking of one server, and the one place that decides every change.
//!
//! The agent calls [`Plan::apply`] inside a store transaction and persists the returned
//! [`Change`]s in that same transaction. An `Err` leaves the plan exactly as it was.
//!
//! Index: per GPU, the bookings holding it, keyed by start. Holding bookings on one GPU never
//! overlap, so in start order their ends ascend too; a conflict check and an earliest-fit
//! search are range scans (`O(log n)` plus what they step over).

use crate::booking::{AsapRequest, Booking, BookingId, BookingState, JobSpec, Note};
use crate::error::{Conflict, PlanError};
use crate::gpu::{Gpu, GpuUuid};
use crate::policy::{Actor, OverPolicy, Policy, Role, Rule};
use crate::time::{floor_to, round_to, week_start, whole_seconds, Interval};
use crate::timeline::Timeline;
use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// How long before a slot starts "starts in 5 minutes" is announced.
pub const START_WARNING: Duration = Duration::minutes(5);
/// How long before a slot ends "ends in 10 minutes" is announced, unless the policy's
/// `end_warning` says otherwise.
pub const END_WARNING: Duration = Duration::minutes(10);
/// Longest title accepted, in characters.
pub const MAX_TITLE: usize = 200;

/// Which GPUs a booking asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuSelection {
    /// These GPUs (what a drag across columns names).
    Named(Vec<GpuUuid>),
    /// Any `count` GPUs with at least `min_memory` bytes each; the plan picks them.
    Count {
        /// How many.
        count: u32,
        /// Minimum memory per GPU, in bytes.
        min_memory: Option<u64>,
    },
}

/// When a booking asks for its GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// This interval, snapped to the nearest points of the policy's grid.
    At(Interval),
    /// The earliest time the GPUs are free for this long; moved earlier as capacity frees.
    Asap(Duration),
}

/// A change someone asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A new booking.
    Book {
        /// Which GPUs.
        gpus: GpuSelection,
        /// When.
        when: When,
        /// What for.
        title: String,
        /// The job to run in the slot, if any.
        job: Option<JobSpec>,
    },
    /// Move or resize (a calendar drag); `gpus` changes the GPUs too.
    Move {
        /// Which booking.
        id: BookingId,
        /// The new interval.
        interval: Interval,
        /// New GPUs, if they change.
        gpus: Option<Vec<GpuUuid>>,
    },
    /// A later end.
    Extend {
        /// Which booking.
        id: BookingId,
        /// The new end.
        end: DateTime<Utc>,
    },
    /// End a started booking now and give the rest back.
    Release {
        /// Which booking.
        id: BookingId,
    },
    /// Withdraw a booking that has not started.
    Cancel {
        /// Which booking.
        id: BookingId,
    },
    /// An admin grants a booking that waits for approval.
    Approve {
        /// Which booking.
        id: BookingId,
    },
    /// An admin refuses it.
    Deny {
        /// Which booking.
        id: BookingId,
        /// Why, for its owner.
        reason: Option<String>,
    },
}

/// What happened to a booking; one event each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A new booking (confirmed or waiting for approval).
    Created,
    /// Moved, resized or extended by a person.
    Changed,
    /// Cancelled before its start.
    Cancelled,
    /// Approved by an admin.
    Approved,
    /// Denied by an admin, or expired while waiting.
    Denied,
    /// An "as soon as possible" booking moved earlier because capacity freed.
    MovedEarlier,
    /// Ended early by its owner; the rest of the slot went back.
    Released,
    /// Its slot starts in [`START_WARNING`].
    SlotStarting,
    /// Its slot started.
    Started,
    /// Its slot ends in the policy's `end_warning` (10 minutes unless set).
    SlotEnding,
    /// Its slot ended.
    Ended,
    /// Its job started (the booking's `run` has the pid).
    JobStarted,
    /// Its job ended by itself (exit code or signal in `run`).
    JobFinished,
    /// Its job was stopped at the slot's end.
    JobStopped,
    /// Its job could not be started (why in `run.message`).
    JobFailed,
    /// Its job vanished while the agent was not watching.
    JobLost,
    /// Someone else's process is on its GPUs (who in the note).
    Intruder,
    /// No process has used its GPUs for a while.
    Idle,
    /// Its GPU usage summary was recorded (in `usage`).
    UsageRecorded,
}

/// One change the plan made: the booking as it is afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The booking after the change.
    pub booking: Booking,
    /// Its interval before, for moves.
    pub before: Option<Interval>,
    /// What the agent saw, for events that are about more than the booking.
    pub note: Option<Note>,
}

/// Every booking of one server and the indexes that make decisions fast.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server's GPUs, in index order.
    gpus: Vec<Gpu>,
    /// The lab's rules.
    policy: Policy,
    /// Every booking ever made, final ones included (the history `ls` shows).
    bookings: HashMap<BookingId, Booking>,
    /// Per GPU, the bookings holding it and the free gaps between them.
    holds: HashMap<GpuUuid, Timeline>,
    /// Per owner, their bookings by start: quota and per-user limits scan only the ones
    /// near the window they check.
    by_owner: HashMap<String, BTreeSet<(DateTime<Utc>, BookingId)>>,
    /// Per owner, an upper bound on their longest booking: how far before a window a booking
    /// that reaches into it can start.
    longest: HashMap<String, Duration>,
    /// Bookings something can still happen to: the slot timer scans only these.
    live: BTreeSet<BookingId>,
    /// Confirmed "as soon as possible" bookings, in the order they were asked.
    asap: BTreeSet<(DateTime<Utc>, BookingId)>,
    /// The next booking's number.
    next_id: u64,
}

impl Plan {
    /// A plan over `gpus` holding `bookings` (as loaded from storage).
    pub fn new(gpus: Vec<Gpu>, policy: Policy, bookings: Vec<Booking>) -> Self {
        let mut gpus = gpus;
        gpus.sort_by_key(|g| g.index);
        let mut plan = Plan {
            gpus,
            policy,
            bookings: HashMap::new(),
            holds: HashMap::new(),
            by_owner: HashMap::new(),
            longest: HashMap::new(),
            live: BTreeSet::new(),
            asap: BTreeSet::new(),
            next_id: 1,
        };
        for b in bookings {
            plan.next_id = plan.next_id.max(b.id.0 + 1);
            plan.store(b);
        }
        plan
    }

    /// The server's GPUs, in index order.
    pub fn gpus(&self) -> &[Gpu] {
        &self.gpus
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the policy (the admin edited the file); existing bookings stay.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// One booking.
    pub fn get(&self, id: BookingId) -> Option<&Booking> {
        self.bookings.get(&id)
    }

    /// Every booking, in no particular order.
    pub fn bookings(&self) -> impl Iterator<Item = &Booking> {
        self.bookings.values()
    }

    /// The number the next booking will get.
    pub fn next_id(&self) -> BookingId {
        BookingId(self.next_id)
    }

    /// GPU-seconds `owner` holds (confirmed, active or used) inside `window`, leaving out
    /// `exclude`. Quotas are checked against this.
    pub fn gpu_seconds(&self, owner: &str, window: &Interval, exclude: Option<BookingId>) -> i64 {
        self.owned_near(owner, window)
            .filter(|b| Some(b.id) != exclude)
            .filter(|b| counts_for_quota(b.state))
            .map(|b| b.gpu_seconds_within(window))
            .sum()
    }

    /// `owner`'s bookings that may overlap `window` (a superset: callers intersect).
    fn owned_near<'a>(
        &'a self,
        owner: &str,
        window: &Interval,
    ) -> impl Iterator<Item = &'a Booking> {
        let reach = self
            .longest
            .get(owner)
            .copied()
            .unwrap_or_else(Duration::zero);
        let from = (window.start - reach, BookingId(0));
        let to = (window.end, BookingId(0));
        self.by_owner
            .get(owner)
            .into_iter()
            .flat_map(move |set| set.range(from..to))
            .filter_map(|(_, id)| self.bookings.get(id))
    }

    /// Holding bookings on any of `gpus` that overlap `interval`, leaving out `exclude`.
    pub fn conflicts(
        &self,
        gpus: &[GpuUuid],
        interval: &Interval,
        exclude: Option<BookingId>,
    ) -> Vec<Conflict> {
        let mut found: BTreeMap<BookingId, Vec<GpuUuid>> = BTreeMap::new();
        for g in gpus {
            for id in self.overlapping(g, interval, exclude) {
                found.entry(id).or_default().push(g.clone());
            }
        }
        found
            .into_iter()
            .map(|(id, gpus)| {
                let b = &self.bookings[&id];
                Conflict {
                    booking: id,
                    owner: b.owner.clone(),
                    gpus,
                    interval: b.interval,
                    title: b.title.clone(),
                }
            })
            .collect()
    }

    fn overlapping(
        &self,
        gpu: &GpuUuid,
        interval: &Interval,
        exclude: Option<BookingId>,
    ) -> Vec<BookingId> {
        self.holds
            .get(gpu)
            .map(|t| t.overlapping(interval, exclude))
            .unwrap_or_default()
    }

    /// Earliest `t >= from` with `[t, t + d)` free on `gpu`.
    fn next_fit(&self, gpu: &GpuUuid, from: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
        self.holds
            .get(gpu)
            .map(|t| t.next_fit(from, d))
            .unwrap_or(from)
    }

    /// Where an "as soon as possible" request goes: the earliest start at or after `from`
    /// at which `count` of `candidates` are free for `d`, and which of them (lowest index
    /// first). `None` when fewer than `count` candidates exist.
    pub fn place(
        &self,
        candidates: &[GpuUuid],
        count: usize,
        d: Duration,
        from: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, Vec<GpuUuid>)> {
        if count == 0 || candidates.len() < count {
            return None;
        }
        let mut t = from;
        let mut fits: Vec<DateTime<Utc>> =
            candidates.iter().map(|g| self.next_fit(g, t, d)).collect();
        loop {
            let mut sorted = fits.clone();
            sorted.sort();
            let nth = sorted[count - 1];
            if nth == t {
                let chosen = candidates
                    .iter()
                    .zip(&fits)
                    .filter(|(_, f)| **f == t)
                    .map(|(g, _)| g.clone())
                    .take(count)
                    .collect();
                return Some((t, chosen));
            }
            // No start in [t, nth) has `count` GPUs free; a GPU whose fit is at or after
            // `nth` keeps it (it was the earliest after the old t, so also after `nth`).
            t = nth;
            for (g, f) in candidates.iter().zip(fits.iter_mut()) {
                if *f < t {
                    *f = self.next_fit(g, t, d);
                }
            }
        }
    }

    /// Applies `op` asked by `actor` at `now`. On success, every booking it changed, in order;
    /// on error, nothing changed.
    pub fn apply(
        &mut self,
        actor: &Actor,
        op: Op,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, PlanError> {
        let now = whole_seconds(now);
        if actor.role == Role::Guest {
            return Err(PlanError::NotAllowed(format!(
                "{} is a guest here: guests can see the calendar but not change it",
                actor.user
            )));
        }
        match op {
            Op::Book {
                gpus,
                when,
                title,
                job,
            } => self.book(actor, gpus, when, title, job, now),
            Op::Move { id, interval, gpus } => self.move_booking(actor, id, interval, gpus, now),
            Op::Extend { id, end } => self.extend(actor, id, end, now),
            Op::Release { id } => self.release(actor, id, now),
            Op::Cancel { id } => self.cancel(actor, id, now),
            Op::Approve { id } => self.approve(actor, id, now),
            Op::Deny { id, reason } => self.deny(actor, id, reason),
        }
    }

    fn book(
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
            check_job(j)?;
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
        };
        let (interval, gpus, asap) = match when {
            When::At(requested) => {
                let interval = self.snap(requested, now)?;
                let free: Vec<GpuUuid> = candidates
                    .iter()
                    .filter(|g| self.overlapping(g, &interval, None).is_empty())
                    .take(count)
                    .cloned()
                    .collect();
                if free.len() < count {
                    return Err(PlanError::Conflict(self.conflicts(
                        &candidates,
                        &interval,
                        None,
                    )));
                }
                (interval, free, None)
            }
            When::Asap(d) => {
                let d = self.snap_duration(d)?;
                let (start, gpus) = self
                    .place(&candidates, count, d, now)
                    .expect("candidates were checked to be enough");
                let asap = AsapRequest {
                    count: count as u32,
                    min_memory,
                    duration_secs: d.num_seconds(),
                    asked_at: now,
                    named,
                    exempt: actor.role == Role::Admin,
                };
                (
                    Interval {
                        start,
                        end: start + d,
                    },
                    gpus,
                    Some(asap),
                )
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
        let (state, pending_reason) = match broken.first() {
            None => (BookingState::Confirmed, None),
            Some((rule, message)) => match self.policy.over_policy {
                OverPolicy::Refuse => {
                    return Err(PlanError::OverPolicy {
                        rule: *rule,
                        message: message.clone(),
                    })
                }
                OverPolicy::Approval => (
                    BookingState::PendingApproval,
                    Some(
                        broken
                            .iter()
                            .map(|(_, m)| m.as_str())
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                ),
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

    fn extend(
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

    fn move_booking(
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
    fn reshape(
        &mut self,
        actor: &Actor,
        old: Booking,
        interval: Interval,
        new_gpus: Option<Vec<GpuUuid>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, PlanError> {
        let id = old.id;
        let gpus = new_gpus.unwrap_or_else(|| old.gpus.clone());
        if old.state.holds_gpus() {
            let conflicts = self.conflicts(&gpus, &interval, Some(id));
            if !conflicts.is_empty() {
                return Err(PlanError::Conflict(conflicts));
            }
        }
        let broken = self.over_policy(
            actor,
            &old.owner,
            gpus.len(),
            &interval,
            now,
            Some(id),
            false,
        );
        let mut pending_reason = old.pending_reason.clone();
        if let Some((rule, message)) = broken.first() {
            if old.state != BookingState::PendingApproval {
                return Err(PlanError::OverPolicy {
                    rule: *rule,
                    message: format!("{message}; ask an admin to make this change"),
                });
            }
            pending_reason = Some(message.clone());
        }
        let mut new = old.clone();
        new.interval = interval;
        new.gpus = gpus;
        new.pending_reason = pending_reason;
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

    fn release(
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
        new.interval.end = now
            .min(before.end)
            .max(new.interval.start + Duration::seconds(1));
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

    fn cancel(
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

    fn approve(
        &mut self,
        actor: &Actor,
        id: BookingId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, PlanError> {
        let b = self.admin_target(actor, id, "approve")?.clone();
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
            new.interval = Interval {
                start,
                end: start + asap.duration(),
            };
            new.gpus = gpus;
        } else {
            let conflicts = self.conflicts(&b.gpus, &b.interval, Some(id));
            if !conflicts.is_empty() {
                return Err(PlanError::Conflict(conflicts));
            }
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

    fn deny(
        &mut self,
        actor: &Actor,
        id: BookingId,
        reason: Option<String>,
    ) -> Result<Vec<Change>, PlanError> {
        let b = self.admin_target(actor, id, "deny")?;
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

    fn admin_target(
        &self,
        actor: &Actor,
        id: BookingId,
        verb: &str,
    ) -> Result<&Booking, PlanError> {
        if actor.role != Role::Admin {
            return Err(PlanError::NotAllowed(format!(
                "only an admin can {verb} a booking; {} is a {}",
                actor.user, actor.role
            )));
        }
        let b = self.find(id)?;
        if b.state != BookingState::PendingApproval {
            return Err(PlanError::Invalid(format!(
                "booking {id} is {}, not waiting for approval",
                b.state
            )));
        }
        Ok(b)
    }

    /// Moves "as soon as possible" bookings that have not started to the earliest start now
    /// free, in the order they were asked; never later than they were, and never beyond the
    /// policy (a move that would break it is not made). Repeats until nothing moves: a later
    /// request moving out of the way can free room for an earlier one. Every move is strictly
    /// earlier, so this ends; the pass limit is a guard, not a rule.
    fn pull_forward(&mut self, now: DateTime<Utc>) -> Vec<Change> {
        let mut changes = Vec::new();
        for _ in 0..=self.asap.len().min(64) {
            let queue: Vec<BookingId> = self.asap.iter().map(|(_, id)| *id).collect();
            let mut any = false;
            for id in queue {
                if let Some(mut change) = self.pull_one(id, now) {
                    any = true;
                    // One event per booking per change: a second move keeps the first's
                    // "before", so the event says where it was when the change began.
                    if let Some(i) = changes.iter().position(|c: &Change| c.booking.id == id) {
                        change.before = changes.remove(i).before;
                    }
                    changes.push(change);
                }
            }
            if !any {
                break;
            }
        }
        changes
    }

    fn pull_one(&mut self, id: BookingId, now: DateTime<Utc>) -> Option<Change> {
        let b = self.bookings[&id].clone();
        if b.state != BookingState::Confirmed || b.interval.start <= now {
            return None;
        }
        let asap = b.asap.clone()?;
        let (candidates, count) = self.asap_candidates(&asap);
        // Look for room as if it were not there; put it back if it does not move.
        self.unhold(&b);
        let owner = Actor {
            user: b.owner.clone(),
            role: if asap.exempt { Role::Admin } else { Role::User },
        };
        let moved = self
            .place(&candidates, count, asap.duration(), now)
            .filter(|(start, _)| *start < b.interval.start)
            .map(|(start, gpus)| {
                let interval = Interval {
                    start,
                    end: start + asap.duration(),
                };
                (interval, gpus)
            })
            .filter(|(interval, gpus)| {
                self.over_policy(&owner, &b.owner, gpus.len(), interval, now, Some(id), true)
                    .is_empty()
            });
        let Some((interval, gpus)) = moved else {
            self.hold(&b);
            return None;
        };
        let mut new = b.clone();
        new.interval = interval;
        new.gpus = gpus;
        new.revision += 1;
        new.warned_start = false;
        new.warned_end = false;
        self.store(new.clone());
        Some(Change {
            kind: ChangeKind::MovedEarlier,
            booking: new,
            before: Some(b.interval),
            note: None,
        })
    }

    fn asap_candidates(&self, asap: &AsapRequest) -> (Vec<GpuUuid>, usize) {
        if asap.named.is_empty() {
            let eligible = self
                .gpus
                .iter()
                .filter(|g| asap.min_memory.is_none_or(|m| g.memory_total >= m))
                .map(|g| g.uuid.clone())
                .collect();
            (eligible, asap.count as usize)
        } else {
            (asap.named.clone(), asap.named.len())
        }
    }

    /// The slot timer: starts, ends and warnings due at `now`, in booking order.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Change> {
        let now = whole_seconds(now);
        let mut changes = Vec::new();
        let live: Vec<BookingId> = self.live.iter().copied().collect();
        for id in live {
            let mut b = self.bookings[&id].clone();
            let mut kinds = Vec::new();
            match b.state {
                BookingState::PendingApproval if b.interval.end <= now && b.asap.is_none() => {
                    b.state = BookingState::Denied;
                    b.pending_reason = Some("its time passed before an admin approved it".into());
                    kinds.push(ChangeKind::Denied);
                }
                BookingState::Confirmed | BookingState::Active => {
                    if b.state == BookingState::Confirmed {
                        if !b.warned_start
                            && now >= b.interval.start - START_WARNING
                            && now < b.interval.start
                        {
                            b.warned_start = true;
                            kinds.push(ChangeKind::SlotStarting);
                        }
                        if now >= b.interval.start {
                            b.warned_start = true;
                            b.state = BookingState::Active;
                            if now < b.interval.end {
                                kinds.push(ChangeKind::Started);
                            }
                        }
                    }
                    if b.state == BookingState::Active {
                        if !b.warned_end
                            && now >= b.interval.end - self.policy.end_warning()
                            && now < b.interval.end
                        {
                            b.warned_end = true;
                            kinds.push(ChangeKind::SlotEnding);
                        }
                        if now >= b.interval.end {
                            b.warned_end = true;
                            b.state = BookingState::Ended;
                            kinds.push(ChangeKind::Ended);
                        }
                    }
                }
                _ => {}
            }
            if kinds.is_empty() {
                continue;
            }
            b.revision += 1;
            self.store(b.clone());
            for kind in kinds {
                changes.push(Change {
                    kind,
                    booking: b.clone(),
                    before: None,
                    note: None,
                });
            }
        }
        changes
    }

    /// When [`Plan::tick`] next has something to do, if ever.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.live
            .iter()
            .filter_map(|id| {
                let b = &self.bookings[id];
                let i = b.interval;
                match b.state {
                    BookingState::Confirmed if !b.warned_start => {
                        Some((i.start - START_WARNING).min(i.start))
                    }
                    BookingState::Confirmed => Some(i.start),
                    BookingState::Active if !b.warned_end => {
                        Some(i.end - self.policy.end_warning())
                    }
                    BookingState::Active => Some(i.end),
                    BookingState::PendingApproval if b.asap.is_none() => Some(i.end),
                    _ => None,
                }
            })
            .min()
    }

    fn find(&self, id: BookingId) -> Result<&Booking, PlanError> {
        self.bookings
            .get(&id)
            .ok_or_else(|| PlanError::NotFound(format!("there is no booking {id} on this server")))
    }

    /// The booking, if `actor` may change it.
    fn owned(&self, actor: &Actor, id: BookingId) -> Result<&Booking, PlanError> {
        let b = self.find(id)?;
        if b.owner != actor.user && actor.role != Role::Admin {
            return Err(PlanError::NotAllowed(format!(
                "booking {id} belongs to {}; only they or an admin can change it",
                b.owner
            )));
        }
        Ok(b)
    }

    fn check_named(&self, gpus: &[GpuUuid]) -> Result<(), PlanError> {
        if gpus.is_empty() {
            return Err(PlanError::Invalid(
                "a booking needs at least one GPU".into(),
            ));
        }
        let mut seen = HashSet::new();
        for g in gpus {
            if !self.gpus.iter().any(|known| &known.uuid == g) {
                return Err(PlanError::NotFound(format!(
                    "there is no GPU {g} on this server"
                )));
            }
            if !seen.insert(g) {
                return Err(PlanError::Invalid(format!("GPU {g} is named twice")));
            }
        }
        if gpus.len() > self.gpus.len() {
            return Err(PlanError::Invalid(format!(
                "asks for {} GPUs; this server has {}",
                gpus.len(),
                self.gpus.len()
            )));
        }
        Ok(())
    }

    /// `gpus` sorted by their index (what CUDA_VISIBLE_DEVICES lists, in that order).
    fn in_index_order(&self, mut gpus: Vec<GpuUuid>) -> Vec<GpuUuid> {
        gpus.sort_by_key(|u| {
            self.gpus
                .iter()
                .find(|g| &g.uuid == u)
                .map(|g| g.index)
                .unwrap_or(u32::MAX)
        });
        gpus
    }

    fn eligible(&self, count: u32, min_memory: Option<u64>) -> Result<Vec<GpuUuid>, PlanError> {
        if count == 0 {
            return Err(PlanError::Invalid(
                "a booking needs at least one GPU".into(),
            ));
        }
        if count as usize > self.gpus.len() {
            return Err(PlanError::Invalid(format!(
                "asks for {count} GPUs; this server has {}",
                self.gpus.len()
            )));
        }
        let eligible: Vec<GpuUuid> = self
            .gpus
            .iter()
            .filter(|g| min_memory.is_none_or(|m| g.memory_total >= m))
            .map(|g| g.uuid.clone())
            .collect();
        if eligible.len() < count as usize {
            return Err(PlanError::Invalid(format!(
                "asks for {count} GPUs with at least {:.0} GiB; this server has {} such GPUs",
                min_memory.unwrap_or(0) as f64 / (1u64 << 30) as f64,
                eligible.len()
            )));
        }
        Ok(eligible)
    }

    /// `requested` snapped to the nearest grid points (keeping at least one slot), checked
    /// not to start in the past.
    fn snap(&self, requested: Interval, now: DateTime<Utc>) -> Result<Interval, PlanError> {
        if requested.end <= requested.start {
            return Err(PlanError::Invalid("the end must be after the start".into()));
        }
        let g = self.policy.granularity();
        let start = round_to(requested.start, g);
        let end = round_to(requested.end, g).max(start + g);
        if start < floor_to(now, g) {
            return Err(PlanError::Invalid(format!(
                "the start ({}) is in the past",
                requested.start.format("%Y-%m-%d %H:%M UTC")
            )));
        }
        Ok(Interval { start, end })
    }

    fn snap_duration(&self, d: Duration) -> Result<Duration, PlanError> {
        if d <= Duration::zero() {
            return Err(PlanError::Invalid(
                "the duration must be more than zero".into(),
            ));
        }
        let g = self.policy.granularity_secs;
        Ok(Duration::seconds((d.num_seconds() + g - 1) / g * g))
    }

    /// The rules a booking of `count` GPUs over `interval` for `owner` goes beyond, in words.
    /// Admins are held to none.
    #[allow(clippy::too_many_arguments)]
    fn over_policy(
        &self,
        actor: &Actor,
        owner: &str,
        count: usize,
        interval: &Interval,
        now: DateTime<Utc>,
        exclude: Option<BookingId>,
        asap: bool,
    ) -> Vec<(Rule, String)> {
        let mut broken = Vec::new();
        if actor.role == Role::Admin {
            return broken;
        }
        let p = &self.policy;
        if let Some(max) = p.max_booking_secs {
            if interval.duration().num_seconds() > max {
                broken.push((
                    Rule::MaxBooking,
                    format!(
                        "a booking may last at most {}",
                        crate::duration::format_duration(Duration::seconds(max))
                    ),
                ));
            }
        }
        if let (Some(max), false) = (p.max_ahead_secs, asap) {
            if interval.start > now + Duration::seconds(max) {
                broken.push((
                    Rule::MaxAhead,
                    format!(
                        "a booking may start at most {} ahead",
                        crate::duration::format_duration(Duration::seconds(max))
                    ),
                ));
            }
        }
        if let Some(quota) = p.weekly_quota_gpu_hours {
            let limit = i64::from(quota) * 3600;
            let mut week = week_start(interval.start);
            while week < interval.end {
                let window = Interval {
                    start: week,
                    end: week + Duration::days(7),
                };
                let new = interval
                    .intersection(&window)
                    .map(|i| i.duration().num_seconds() * count as i64)
                    .unwrap_or(0);
                let used = self.gpu_seconds(owner, &window, exclude);
                if used + new > limit {
                    broken.push((
                        Rule::WeeklyQuota,
                        format!(
                            "{owner} would hold {:.1} GPU-hours in the week of {}, over the \
                             weekly quota of {quota}",
                            (used + new) as f64 / 3600.0,
                            week.format("%Y-%m-%d")
                        ),
                    ));
                    break;
                }
                week = window.end;
            }
        }
        if let Some(max) = p.max_gpus_at_once {
            let peak = self.peak_gpus(owner, interval, exclude) + count;
            if peak > max as usize {
                broken.push((
                    Rule::MaxGpusAtOnce,
                    format!("{owner} would hold {peak} GPUs at once; the limit is {max}"),
                ));
            }
        }
        broken
    }

    /// Most GPUs `owner` holds at any moment of `interval`.
    fn peak_gpus(&self, owner: &str, interval: &Interval, exclude: Option<BookingId>) -> usize {
        let mut edges: Vec<(DateTime<Utc>, i64)> = Vec::new();
        for b in self.owned_near(owner, interval) {
            if Some(b.id) == exclude || !b.state.holds_gpus() {
                continue;
            }
            if let Some(i) = b.interval.intersection(interval) {
                edges.push((i.start, b.gpus.len() as i64));
                edges.push((i.end, -(b.gpus.len() as i64)));
            }
        }
        // Ends sort before starts at the same instant: half-open intervals.
        edges.sort();
        let (mut now, mut peak) = (0i64, 0i64);
        for (_, delta) in edges {
            now += delta;
            peak = peak.max(now);
        }
        peak as usize
    }

    /// Puts `b` in place of the booking with its id, keeping every index right.
    fn store(&mut self, b: Booking) {
        if let Some(old) = self.bookings.remove(&b.id) {
            self.unindex(&old);
        }
        if b.state.holds_gpus() {
            self.hold(&b);
        }
        self.by_owner
            .entry(b.owner.clone())
            .or_default()
            .insert((b.interval.start, b.id));
        let longest = self
            .longest
            .entry(b.owner.clone())
            .or_insert_with(Duration::zero);
        *longest = (*longest).max(b.interval.duration());
        if !b.state.is_final() {
            self.live.insert(b.id);
        }
        if let (Some(a), BookingState::Confirmed) = (&b.asap, b.state) {
            self.asap.insert((a.asked_at, b.id));
        }
        self.bookings.insert(b.id, b);
    }

    fn unindex(&mut self, b: &Booking) {
        self.unhold(b);
        if let Some(set) = self.by_owner.get_mut(&b.owner) {
            set.remove(&(b.interval.start, b.id));
        }
        self.live.remove(&b.id);
        if let Some(a) = &b.asap {
            self.asap.remove(&(a.asked_at, b.id));
        }
    }

    /// Marks `b`'s GPUs as held over its interval.
    fn hold(&mut self, b: &Booking) {
        for g in &b.gpus {
            self.holds
                .entry(g.clone())
                .or_default()
                .insert(b.interval.start, b.id, b.interval.end);
        }
    }

    /// Frees `b`'s GPUs over its interval (nothing if they were not held).
    fn unhold(&mut self, b: &Booking) {
        for g in &b.gpus {
            if let Some(t) = self.holds.get_mut(g) {
                t.remove(b.interval.start, b.id);
            }
        }
    }
}

fn counts_for_quota(s: BookingState) -> bool {
    matches!(
        s,
        BookingState::Confirmed | BookingState::Active | BookingState::Ended
    )
}

/// Bounds on a job's parts: a booking must always fit one frame when it is listed.
fn check_job(j: &JobSpec) -> Result<(), PlanError> {
    const COMMAND: usize = 16 * 1024;
    const PATH: usize = 4096;
    const VARS: usize = 128;
    const VALUE: usize = 4096;
    let invalid = |m: String| Err(PlanError::Invalid(m));
    if j.command.trim().is_empty() {
        return invalid("the job's command is empty".into());
    }
    if j.command.len() > COMMAND {
        return invalid(format!("the job's command is longer than {COMMAND} bytes"));
    }
    if j.cwd.as_ref().is_some_and(|c| c.len() > PATH) {
        return invalid(format!(
            "the job's working directory is longer than {PATH} bytes"
        ));
    }
    if let Some(sig) = &j.end_signal {
        if crate::booking::canonical_signal(sig).is_none() {
            return invalid(format!(
                "{sig:?} is not a signal a job can be sent at its end; use one of {}",
                crate::booking::JOB_SIGNALS.join(", ")
            ));
        }
    }
    if j.grace_secs.is_some_and(|g| g > 3600) {
        return invalid("the grace period may be at most 3600 seconds".into());
    }
    if j.env.len() > VARS {
        return invalid(format!(
            "the job sets more than {VARS} environment variables"
        ));
    }
    if let Some((k, _)) = j
        .env
        .iter()
        .find(|(k, v)| k.is_empty() || k.contains('=') || k.len() + v.len() > VALUE)
    {
        return invalid(format!(
            "the job's environment variable {k:?} is empty, contains '=', or is over {VALUE} bytes"
        ));
    }
    Ok(())
}

fn check_title(title: &str) -> Result<(), PlanError> {
    if title.chars().count() > MAX_TITLE {
        return Err(PlanError::Invalid(format!(
            "the title is longer than {MAX_TITLE} characters"
        )));
    }
    if title.chars().any(|c| c.is_control()) {
        return Err(PlanError::Invalid(
            "the title contains control characters".into(),
        ));
    }
    Ok(())
}
