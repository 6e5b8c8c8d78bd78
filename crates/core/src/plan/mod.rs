//! The plan: every booking of one server, and the one place that decides every change.
//!
//! The agent calls [`Plan::apply`] inside a store transaction and persists the returned
//! [`Change`]s in that same transaction. An `Err` leaves the plan exactly as it was.
//!
//! Index: per GPU, the bookings holding it, keyed by start. Holding bookings on one GPU never
//! overlap, so in start order their ends ascend too; a conflict check and an earliest-fit
//! search are range scans (`O(log n)` plus what they step over).

use crate::booking::{
    AsapRequest, Booking, BookingId, BookingState, JobSpec, Note, MAX_BOOKING_BYTES,
};
use crate::error::{Conflict, PlanError};
use crate::gpu::{Gpu, GpuUuid};
use crate::maintenance::{Maintenance, MaintenanceId};
use crate::policy::{Actor, OverPolicy, Policy, Role, Rule};
use crate::time::{ceil_to, floor_to, round_to, week_start, whole_seconds, Interval};
use crate::timeline::Timeline;

mod contents;
mod limits;
mod maintenance;
mod ops;
mod outside;
mod queue;
mod timer;
use chrono::{DateTime, Duration, Utc};
pub use maintenance::AGENT_USER;
pub use outside::Outside;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// How long before a slot starts "starts in 5 minutes" is announced.
pub const START_WARNING: Duration = Duration::minutes(5);
/// How long before a slot ends "ends in 10 minutes" is announced, unless the policy's
/// `end_warning` says otherwise.
pub const END_WARNING: Duration = Duration::minutes(10);
/// Longest title accepted, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest reason an admin may give for a denial, in characters.
pub const MAX_REASON: usize = 1000;
/// A booking asked to start at most this long after the plan's `now` starts at `now`: the
/// client's clock may run a little behind the server's (see [`When::At`]).
pub const START_NOW_TOLERANCE: Duration = Duration::seconds(60);
/// How far after `now` anything may be booked, admins included (about ten years). Times
/// beyond it are refused as invalid, so no arithmetic on a booking's times can overflow.
pub const MAX_HORIZON: Duration = Duration::days(3660);

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
    /// Any `count` GPUs of the node `node` of a cluster (what a rectangle across one Slurm
    /// node's lanes asks for: that many GPUs of that node, whichever its scheduler picks).
    OnNode {
        /// The node, as its GPUs name it ([`crate::Gpu::node`]).
        node: String,
        /// How many.
        count: u32,
    },
}

/// When a booking asks for its GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// This interval, snapped to the nearest points of the policy's grid. A start for now
    /// (at or before now, or off the grid and within [`START_NOW_TOLERANCE`] after it)
    /// starts at now, to the second, and only the end snaps to the grid.
    At(Interval),
    /// The earliest time the GPUs are free for this long; moved earlier as capacity frees.
    Asap(Duration),
}

/// A change someone asks for.
// One is built per request and applied at once, never kept in bulk: a job inline (with its
// stage and save entries) costs nothing worth boxing it for.
#[allow(clippy::large_enum_variant)]
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
        /// The revision the admin saw; `None` from an older client (then taken only if the
        /// booking has not changed since it became pending).
        rev: Option<u32>,
    },
    /// An admin refuses it.
    Deny {
        /// Which booking.
        id: BookingId,
        /// Why, for its owner.
        reason: Option<String>,
        /// The revision the admin saw, as for `Approve`.
        rev: Option<u32>,
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
    /// Its GPUs hold memory while nearly idle, for a while.
    IdleHeld,
    /// Its GPU usage summary was recorded (in `usage`).
    UsageRecorded,
    /// How far the copy of its staged data has come (in the note).
    StageProgress,
    /// Its staged data is in place for its slot (in the note).
    StageReady,
    /// Its data could not be staged (why in the note).
    StageFailed,
    /// Its job's results were saved (files and where in the note).
    JobSaved,
    /// Its job's results could not be saved after every retry (why in the note).
    SaveFailed,
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
    /// Per owner, how many of their bookings wait for approval: `max_pending` is checked
    /// against it.
    waiting: HashMap<String, u32>,
    /// Confirmed "as soon as possible" bookings, in the order they were asked.
    asap: BTreeSet<(DateTime<Utc>, BookingId)>,
    /// The next booking's number.
    next_id: u64,
    /// Every maintenance period, ended ones included (the calendar shows the recent past).
    maintenance: BTreeMap<MaintenanceId, Maintenance>,
    /// Per GPU, the maintenance periods taking it out of service (keyed by the period's
    /// number in the booking-number slot: a separate timeline, so the two never mix).
    blocked: HashMap<GpuUuid, Timeline>,
    /// The next maintenance period's number.
    next_maintenance: u64,
    /// What holds the GPUs outside gpubook (Slurm's jobs and reservations), as last read.
    outside: Vec<Outside>,
    /// Per GPU, the union of `outside`'s holds on it.
    outside_busy: HashMap<GpuUuid, Timeline>,
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
            waiting: HashMap::new(),
            asap: BTreeSet::new(),
            next_id: 1,
            maintenance: BTreeMap::new(),
            blocked: HashMap::new(),
            next_maintenance: 1,
            outside: Vec::new(),
            outside_busy: HashMap::new(),
        };
        for b in bookings {
            plan.next_id = plan.next_id.max(b.id.0.saturating_add(1));
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

    /// How many of `owner`'s bookings wait for an admin's approval.
    pub fn waiting(&self, owner: &str) -> u32 {
        self.waiting.get(owner).copied().unwrap_or(0)
    }

    /// How many of `owner`'s bookings have not ended (confirmed, started or waiting).
    pub fn upcoming(&self, owner: &str) -> u32 {
        self.by_owner.get(owner).map_or(0, |own| {
            own.iter()
                .filter(|(_, id)| self.bookings.get(id).is_some_and(|b| !b.state.is_final()))
                .count() as u32
        })
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
            .fold(0i64, i64::saturating_add)
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
        let from = (
            window
                .start
                .checked_sub_signed(reach)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            BookingId(0),
        );
        // A window asked backwards holds nothing (and a backwards range would panic).
        let to = (window.end.max(from.0), BookingId(0));
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

    /// Earliest `t >= from` with `[t, t + d)` free on `gpu`: held by no booking, in no
    /// maintenance and by nothing outside gpubook. Each timeline's fit is at or after the
    /// others' guess, so going round them only moves forward and stops where all agree.
    fn next_fit(&self, gpu: &GpuUuid, from: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
        let mut t = from;
        loop {
            let held = self.holds.get(gpu).map_or(t, |tl| tl.next_fit(t, d));
            let free = self
                .blocked
                .get(gpu)
                .map_or(held, |tl| tl.next_fit(held, d));
            let free = self.outside_fit(gpu, free, d);
            if free == t {
                return t;
            }
            t = free;
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
            Op::Approve { id, rev } => self.approve(actor, id, rev, now),
            Op::Deny { id, reason, rev } => self.deny(actor, id, reason, rev),
        }
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
        if b.state == BookingState::PendingApproval {
            *self.waiting.entry(b.owner.clone()).or_default() += 1;
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
        if b.state == BookingState::PendingApproval {
            if let Some(n) = self.waiting.get_mut(&b.owner) {
                *n = n.saturating_sub(1);
            }
        }
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
