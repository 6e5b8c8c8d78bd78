//! Property tests of the plan: random sequences of every operation (book by name, by count and
//! memory, as soon as possible; move, extend, release, cancel, approve, deny; the slot timer
//! with time moving on) by an admin, two users and a guest, on a four-GPU server under a
//! policy with every limit set.
//!
//! After every step the rules are checked by brute force over [`Plan::bookings`], never
//! through the plan's own indexes. Each test checks one group of rules over the same random
//! histories, so a broken rule names itself. `PROPTEST_CASES` raises the number of histories.

use chrono::{DateTime, Duration, Utc};
use gpubook_core::policy::OverPolicy;
use gpubook_core::{
    Actor, Booking, BookingId, BookingState, Change, ChangeKind, Gpu, GpuSelection, GpuUuid,
    Interval, Op, Plan, PlanError, Policy, Role, When,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, BTreeSet};

const GIB: u64 = 1 << 30;
/// Memory of GPU 0, 1, 2, 3 in GiB. Index 4 names a GPU the server does not have.
const MEMORY: [u64; 4] = [80, 80, 40, 24];
const GRID: i64 = 15 * 60;
const MAX_BOOKING: i64 = 8 * 3600;
const MAX_AHEAD: i64 = 2 * 86_400;
const QUOTA_HOURS: i64 = 12;
const MAX_AT_ONCE: usize = 3;
/// Histories start on a Sunday morning, so the quota week turns over 15 hours in.
const T0: &str = "2026-03-01T09:00:00Z";
/// The Monday 00:00 UTC that starts T0's week; weeks are counted from here.
const FIRST_MONDAY: &str = "2026-02-23T00:00:00Z";
const WEEKS: i64 = 8;

fn t0() -> DateTime<Utc> {
    T0.parse().expect("T0 is RFC 3339")
}

fn uuid(i: usize) -> GpuUuid {
    if i < MEMORY.len() {
        GpuUuid(format!("GPU-{i}"))
    } else {
        GpuUuid("GPU-missing".into())
    }
}

fn index_of(g: &GpuUuid) -> usize {
    (0..MEMORY.len())
        .find(|i| uuid(*i) == *g)
        .unwrap_or(usize::MAX)
}

fn server() -> Vec<Gpu> {
    MEMORY
        .iter()
        .enumerate()
        .map(|(i, mem)| Gpu {
            uuid: uuid(i),
            index: i as u32,
            name: format!("Test GPU {i}"),
            memory_total: mem * GIB,
            server: "lab1".into(),
            simulated: true,
            node: None,
        })
        .collect()
}

fn policy(over_policy: OverPolicy) -> Policy {
    Policy {
        granularity_secs: GRID,
        max_booking_secs: Some(MAX_BOOKING),
        max_ahead_secs: Some(MAX_AHEAD),
        weekly_quota_gpu_hours: Some(QUOTA_HOURS as u32),
        max_gpus_at_once: Some(MAX_AT_ONCE as u32),
        over_policy,
        ..Policy::default()
    }
}

fn actors() -> [Actor; 4] {
    [
        ("alice", Role::Admin),
        ("bob", Role::User),
        ("carol", Role::User),
        ("gus", Role::Guest),
    ]
    .map(|(user, role)| Actor {
        user: user.into(),
        role,
    })
}

// ---------------------------------------------------------------------------------------------
// Random histories

/// Which GPUs a generated booking asks for.
#[derive(Debug, Clone)]
enum Sel {
    /// By index; 4 is a GPU the server does not have, repeats are possible.
    Named(Vec<usize>),
    /// A count, with a minimum memory in GiB.
    Count { count: u32, min_gib: Option<u64> },
}

/// When a generated booking asks for them, relative to the current time.
#[derive(Debug, Clone)]
enum WhenSpec {
    At { start: i64, len: i64 },
    Asap { len: i64 },
}

/// Which bookings a target is drawn from, when there are any.
#[derive(Debug, Clone, Copy)]
enum Pool {
    /// Any booking, or one that does not exist.
    Any,
    /// Not final.
    Live,
    /// Started.
    Active,
    /// Waiting for approval.
    Pending,
    /// The actor's own, not final.
    Own,
}

/// The revision an admin's decision names.
#[derive(Debug, Clone, Copy)]
enum Rev {
    /// None: an older client.
    Unnamed,
    /// The booking's revision now.
    Current,
    /// This many revisions before it (or after, for a negative number).
    Stale(i32),
}

fn rev() -> impl Strategy<Value = Rev> {
    prop_oneof![
        2 => Just(Rev::Unnamed),
        3 => Just(Rev::Current),
        1 => (-2i32..=3).prop_map(Rev::Stale),
    ]
}

#[derive(Debug, Clone, Copy)]
struct Target {
    pool: Pool,
    pick: usize,
}

#[derive(Debug, Clone)]
enum Step {
    Book {
        who: usize,
        sel: Sel,
        when: WhenSpec,
    },
    Move {
        who: usize,
        target: Target,
        shift: i64,
        len: Option<i64>,
        gpus: Option<Vec<usize>>,
    },
    Extend {
        who: usize,
        target: Target,
        by: i64,
    },
    Release {
        who: usize,
        target: Target,
    },
    Cancel {
        who: usize,
        target: Target,
    },
    Approve {
        who: usize,
        target: Target,
        rev: Rev,
    },
    Deny {
        who: usize,
        target: Target,
        rev: Rev,
    },
    /// The timer runs after `advance` seconds.
    Tick {
        advance: i64,
    },
    /// The timer runs exactly when the plan says it is next due.
    TickToDue,
    /// Time moves on `advance` seconds before the timer runs (it is late, or a request
    /// arrives between two of its runs).
    Wait {
        advance: i64,
    },
}

fn who() -> impl Strategy<Value = usize> {
    prop_oneof![2 => Just(0), 3 => Just(1), 3 => Just(2), 1 => Just(3)]
}

/// Mostly the admin: approving and denying is theirs.
fn approver() -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(0), 1 => Just(1), 1 => Just(2), 1 => Just(3)]
}

fn on_grid(lo: i64, hi: i64) -> impl Strategy<Value = i64> {
    (lo..=hi).prop_map(|q| q * GRID)
}

fn start_offset(busy: bool) -> BoxedStrategy<i64> {
    if busy {
        return on_grid(-2, 12).boxed();
    }
    prop_oneof![
        4 => on_grid(-4, 24),
        1 => on_grid(-4, 200),
        1 => -3600i64..=3 * 86_400,
    ]
    .boxed()
}

fn length(busy: bool) -> BoxedStrategy<i64> {
    if busy {
        return on_grid(1, 8).boxed();
    }
    prop_oneof![
        4 => on_grid(1, 16),
        1 => on_grid(1, 40),
        1 => -1800i64..=10 * 3600,
        1 => -600i64..=0,
    ]
    .boxed()
}

fn asap_length(busy: bool) -> BoxedStrategy<i64> {
    if busy {
        return prop_oneof![4 => on_grid(1, 8), 1 => 1i64..=2 * 3600].boxed();
    }
    prop_oneof![4 => on_grid(1, 16), 1 => -600i64..=10 * 3600].boxed()
}

fn named(busy: bool) -> BoxedStrategy<Vec<usize>> {
    if busy {
        return proptest::sample::subsequence(vec![0usize, 1], 1..=2)
            .prop_shuffle()
            .boxed();
    }
    prop_oneof![
        6 => proptest::sample::subsequence(vec![0usize, 1, 2, 3], 1..=4).prop_shuffle(),
        1 => proptest::collection::vec(0usize..=4, 0..=5),
    ]
    .boxed()
}

fn sel(busy: bool) -> BoxedStrategy<Sel> {
    if busy {
        // Everyone wants the two 80 GiB GPUs.
        let count = (1u32..=2).prop_map(|count| Sel::Count {
            count,
            min_gib: Some(80),
        });
        return prop_oneof![named(true).prop_map(Sel::Named), count].boxed();
    }
    let count = prop_oneof![1 => Just(0u32), 8 => 1u32..=3, 1 => 4u32..=5];
    let min_gib = proptest::sample::select(vec![
        None,
        None,
        None,
        Some(24),
        Some(40),
        Some(80),
        Some(100),
    ]);
    prop_oneof![
        named(false).prop_map(Sel::Named),
        (count, min_gib).prop_map(|(count, min_gib)| Sel::Count { count, min_gib }),
    ]
    .boxed()
}

fn when(busy: bool) -> impl Strategy<Value = WhenSpec> {
    prop_oneof![
        (start_offset(busy), length(busy)).prop_map(|(start, len)| WhenSpec::At { start, len }),
        asap_length(busy).prop_map(|len| WhenSpec::Asap { len }),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    let pool = proptest::sample::select(vec![
        Pool::Any,
        Pool::Live,
        Pool::Active,
        Pool::Pending,
        Pool::Own,
        Pool::Own,
        Pool::Own,
    ]);
    (pool, 0usize..1000).prop_map(|(pool, pick)| Target { pool, pick })
}

/// One step. A busy history crowds short bookings onto the two 80 GiB GPUs within hours of
/// now, with many cancels and releases, so that the queue moves often.
fn step(busy: bool) -> impl Strategy<Value = Step> {
    let shift = prop_oneof![2 => Just(0i64), 2 => on_grid(-24, 24), 1 => -6 * 3600i64..=6 * 3600];
    let by = prop_oneof![4 => on_grid(1, 16), 1 => -3600i64..=6 * 3600];
    let advance = if busy {
        prop_oneof![1 => Just(0i64), 4 => 1i64..=3600, 1 => on_grid(1, 4)].boxed()
    } else {
        prop_oneof![1 => Just(0i64), 4 => 1i64..=4 * 3600, 1 => on_grid(1, 16)].boxed()
    };
    let (book, undo) = if busy { (8, 3) } else { (6, 2) };
    prop_oneof![
        book => (who(), sel(busy), when(busy))
            .prop_map(|(who, sel, when)| Step::Book { who, sel, when }),
        2 => (
            who(),
            target(),
            shift,
            proptest::option::weighted(0.3, length(busy)),
            proptest::option::weighted(0.2, named(busy)),
        )
            .prop_map(|(who, target, shift, len, gpus)| Step::Move {
                who,
                target,
                shift,
                len,
                gpus
            }),
        2 => (who(), target(), by).prop_map(|(who, target, by)| Step::Extend { who, target, by }),
        undo => (who(), target()).prop_map(|(who, target)| Step::Release { who, target }),
        undo => (who(), target()).prop_map(|(who, target)| Step::Cancel { who, target }),
        2 => (approver(), target(), rev())
            .prop_map(|(who, target, rev)| Step::Approve { who, target, rev }),
        1 => (approver(), target(), rev())
            .prop_map(|(who, target, rev)| Step::Deny { who, target, rev }),
        3 => advance.prop_map(|advance| Step::Tick { advance }),
        1 => Just(Step::TickToDue),
        1 => (1i64..=3600).prop_map(|advance| Step::Wait { advance }),
    ]
}

/// Whether the policy refuses (rather than sends to approval), and the steps; half the
/// histories are busy ones.
fn history() -> impl Strategy<Value = (bool, Vec<Step>)> {
    let steps = prop_oneof![
        proptest::collection::vec(step(false), 1..=40),
        proptest::collection::vec(step(true), 1..=40),
    ];
    (any::<bool>(), steps)
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Which rules a test checks

const DISJOINT: u32 = 1 << 0;
const ASAP_EARLIEST: u32 = 1 << 1;
const QUEUE_SETTLED: u32 = 1 << 2;
const NOBODY_LATER: u32 = 1 << 3;
const QUOTA: u32 = 1 << 4;
const ERR_UNCHANGED: u32 = 1 << 5;
const CHANGES_TOLD: u32 = 1 << 6;
const OPS_AS_SAID: u32 = 1 << 7;
const GPU_ORDER: u32 = 1 << 8;
const EXTEND_KEEPS_START: u32 = 1 << 9;
const RELEASE_NOT_LONGER: u32 = 1 << 10;
const BACKWARDS: u32 = 1 << 11;
const QUEUE_WITHIN_POLICY: u32 = 1 << 12;

proptest! {
    #![proptest_config(config())]

    /// (a) No two bookings that hold GPUs (confirmed or active) share a GPU at any moment, and
    /// `Plan::conflicts` finds exactly the bookings a brute-force scan finds.
    #[test]
    fn no_two_holding_bookings_ever_share_a_gpu((refuse, steps) in history()) {
        run(refuse, &steps, DISJOINT)?;
    }

    /// (b) A new "as soon as possible" booking starts at the earliest time at which enough
    /// eligible GPUs are free for its whole length (and so does an approved one).
    #[test]
    fn asap_bookings_start_at_the_earliest_feasible_time((refuse, steps) in history()) {
        run(refuse, &steps, ASAP_EARLIEST)?;
    }

    /// (b, after every step) Every waiting "as soon as possible" booking starts at the earliest
    /// time its GPUs are free: when capacity frees, the queue moves up completely.
    #[test]
    fn the_asap_queue_is_always_settled((refuse, steps) in history()) {
        run(refuse, &steps, QUEUE_SETTLED)?;
    }

    /// (c) Moving earlier never delays anyone: every booking other than the op's target keeps
    /// its interval or moves earlier by a `MovedEarlier` change, with its length kept.
    #[test]
    fn nobody_is_ever_moved_later((refuse, steps) in history()) {
        run(refuse, &steps, NOBODY_LATER)?;
    }

    /// (d) `Plan::gpu_seconds` equals an independent sum, and a booking a user gets confirmed
    /// (or moves) is within every limit; one sent to approval breaks at least one.
    #[test]
    fn quota_sums_are_exact_and_limits_hold((refuse, steps) in history()) {
        run(refuse, &steps, QUOTA)?;
    }

    /// (e) An `Err` from `Plan::apply` leaves every booking, and the next id, as it was; guests
    /// and users asking admin things always get `NotAllowed`.
    #[test]
    fn a_refused_op_changes_nothing((refuse, steps) in history()) {
        run(refuse, &steps, ERR_UNCHANGED)?;
    }

    /// The changes returned are the whole story (replaying them gives the plan), and the slot
    /// timer is consistent with `next_due`.
    #[test]
    fn changes_tell_everything_and_the_timer_agrees((refuse, steps) in history()) {
        run(refuse, &steps, CHANGES_TOLD)?;
    }

    /// Each op changes what it says and no more: a book gets the grid-snapped interval and
    /// the GPUs named, a move the interval asked, an extension the end asked, a cancel or a
    /// release only the state, approve and deny only a waiting booking.
    #[test]
    fn ops_change_only_what_they_say((refuse, steps) in history()) {
        run(refuse, &steps, OPS_AS_SAID)?;
    }

    /// A booking or move whose end is not after its start is refused, even when both lie in
    /// one grid cell (snapping must not turn it into a 15-minute booking).
    #[test]
    fn a_backwards_request_is_refused((refuse, steps) in history()) {
        run(refuse, &steps, BACKWARDS)?;
    }

    /// An extension moves the end later and never moves the start.
    #[test]
    fn an_extension_keeps_the_start((refuse, steps) in history()) {
        run(refuse, &steps, EXTEND_KEEPS_START)?;
    }

    /// A release ends a booking at or before its end, never after (even when the timer is
    /// late), and never before its start.
    #[test]
    fn a_release_never_lengthens_a_booking((refuse, steps) in history()) {
        run(refuse, &steps, RELEASE_NOT_LONGER)?;
    }

    /// The queue moving a user's booking earlier does not take it beyond the limits it was
    /// within (the weekly quota of an earlier week, GPUs at once).
    #[test]
    fn the_queue_keeps_bookings_within_policy((refuse, steps) in history()) {
        run(refuse, &steps, QUEUE_WITHIN_POLICY)?;
    }

    /// Every booking keeps its GPUs in index order, as `Booking::gpus` says.
    #[test]
    fn gpus_are_kept_in_index_order((refuse, steps) in history()) {
        run(refuse, &steps, GPU_ORDER)?;
    }
}

fn run(refuse: bool, steps: &[Step], checks: u32) -> Result<(), TestCaseError> {
    let over = if refuse {
        OverPolicy::Refuse
    } else {
        OverPolicy::Approval
    };
    let mut world = World {
        plan: Plan::new(server(), policy(over), Vec::new()),
        now: t0(),
        over,
        checks,
        told: BTreeMap::new(),
    };
    for (n, step) in steps.iter().enumerate() {
        world.step(step).map_err(|e| {
            TestCaseError::fail(format!(
                "after step {n} ({step:?}) at {}: {e}",
                world.now.format("%a %Y-%m-%d %H:%M:%S")
            ))
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Running a history

/// The plan under test and what the checks need beside it.
struct World {
    plan: Plan,
    /// The current time; moves only with ticks.
    now: DateTime<Utc>,
    over: OverPolicy,
    checks: u32,
    /// Every booking as the returned changes told it.
    told: BTreeMap<BookingId, Booking>,
}

/// One op, resolved against the current plan.
struct Request {
    actor: Actor,
    op: Op,
    /// The booking the op is about (the new one for a book).
    target: Option<BookingId>,
    /// For a book by count or name: the GPUs it may use and how many.
    eligible: Option<(Vec<GpuUuid>, usize)>,
}

fn all(plan: &Plan) -> BTreeMap<BookingId, Booking> {
    plan.bookings().map(|b| (b.id, b.clone())).collect()
}

fn secs(s: i64) -> Duration {
    Duration::seconds(s)
}

impl World {
    fn on(&self, check: u32) -> bool {
        self.checks & check != 0
    }

    fn step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Tick { advance } => self.tick(self.now + secs(*advance)),
            Step::TickToDue => {
                let t = match self.plan.next_due() {
                    Some(due) if due > self.now => due,
                    _ => self.now,
                };
                self.tick(t)
            }
            Step::Wait { advance } => {
                self.now += secs(*advance);
                Ok(())
            }
            _ => {
                let req = self.resolve(step);
                self.apply(req)
            }
        }
    }

    fn pick(&self, t: Target, actor: &Actor) -> BookingId {
        let bs = all(&self.plan);
        let of = |f: &dyn Fn(&Booking) -> bool| -> Vec<BookingId> {
            bs.values().filter(|b| f(b)).map(|b| b.id).collect()
        };
        let mut pool = match t.pool {
            Pool::Any => {
                let mut ids: Vec<BookingId> = bs.keys().copied().collect();
                if t.pick % 8 == 0 {
                    ids.push(self.plan.next_id());
                }
                ids
            }
            Pool::Live => of(&|b| !b.state.is_final()),
            Pool::Active => of(&|b| b.state == BookingState::Active),
            Pool::Pending => of(&|b| b.state == BookingState::PendingApproval),
            Pool::Own => of(&|b| b.owner == actor.user && !b.state.is_final()),
        };
        if pool.is_empty() {
            pool = bs.keys().copied().collect();
        }
        if pool.is_empty() {
            pool.push(self.plan.next_id());
        }
        pool[t.pick % pool.len()]
    }

    /// The revision an admin's decision on booking `id` names.
    fn revision(&self, id: BookingId, rev: Rev) -> Option<u32> {
        let now = self.plan.get(id).map_or(1, |b| b.revision);
        match rev {
            Rev::Unnamed => None,
            Rev::Current => Some(now),
            Rev::Stale(k) => Some(now.saturating_add_signed(-k)),
        }
    }

    fn resolve(&self, step: &Step) -> Request {
        let actors = actors();
        let simple = |who: &usize, target: &Target, make: &dyn Fn(BookingId) -> Op| {
            let actor = actors[*who].clone();
            let id = self.pick(*target, &actor);
            Request {
                actor,
                op: make(id),
                target: Some(id),
                eligible: None,
            }
        };
        match step {
            Step::Book { who, sel, when } => {
                let (gpus, eligible) = match sel {
                    Sel::Named(ix) => {
                        let g: Vec<GpuUuid> = ix.iter().map(|i| uuid(*i)).collect();
                        (GpuSelection::Named(g.clone()), (g.clone(), g.len()))
                    }
                    Sel::Count { count, min_gib } => {
                        let g = (0..MEMORY.len())
                            .filter(|i| min_gib.is_none_or(|m| MEMORY[*i] >= m))
                            .map(uuid)
                            .collect();
                        (
                            GpuSelection::Count {
                                count: *count,
                                min_memory: min_gib.map(|m| m * GIB),
                            },
                            (g, *count as usize),
                        )
                    }
                };
                let when = match when {
                    WhenSpec::At { start, len } => {
                        let start = self.now + secs(*start);
                        When::At(Interval {
                            start,
                            end: start + secs(*len),
                        })
                    }
                    WhenSpec::Asap { len } => When::Asap(secs(*len)),
                };
                Request {
                    actor: actors[*who].clone(),
                    op: Op::Book {
                        gpus,
                        when,
                        title: "random".into(),
                        job: None,
                    },
                    target: Some(self.plan.next_id()),
                    eligible: Some(eligible),
                }
            }
            Step::Move {
                who,
                target,
                shift,
                len,
                gpus,
            } => simple(who, target, &|id| {
                let old = self.plan.get(id).map(|b| b.interval);
                let start = old.map_or(self.now, |i| i.start) + secs(*shift);
                let len = len.map_or_else(|| old.map_or(secs(3600), |i| i.duration()), secs);
                Op::Move {
                    id,
                    interval: Interval {
                        start,
                        end: start + len,
                    },
                    gpus: gpus.as_ref().map(|g| g.iter().map(|i| uuid(*i)).collect()),
                }
            }),
            Step::Extend { who, target, by } => simple(who, target, &|id| {
                let end = self.plan.get(id).map_or(self.now, |b| b.interval.end);
                Op::Extend {
                    id,
                    end: end + secs(*by),
                }
            }),
            Step::Release { who, target } => simple(who, target, &|id| Op::Release { id }),
            Step::Cancel { who, target } => simple(who, target, &|id| Op::Cancel { id }),
            Step::Approve { who, target, rev } => simple(who, target, &|id| Op::Approve {
                id,
                rev: self.revision(id, *rev),
            }),
            Step::Deny { who, target, rev } => simple(who, target, &|id| Op::Deny {
                id,
                reason: None,
                rev: self.revision(id, *rev),
            }),
            Step::Tick { .. } | Step::TickToDue | Step::Wait { .. } => {
                unreachable!("the clock is not an op")
            }
        }
    }

    fn apply(&mut self, req: Request) -> Result<(), String> {
        let before = all(&self.plan);
        let next_id = self.plan.next_id();
        let result = self.plan.apply(&req.actor, req.op.clone(), self.now);
        let after = all(&self.plan);
        match result {
            Err(e) => {
                if self.on(ERR_UNCHANGED) {
                    if before != after || self.plan.next_id() != next_id {
                        return Err(format!(
                            "{:?} was refused ({e}) but changed the plan",
                            req.op
                        ));
                    }
                    let admin_only = matches!(req.op, Op::Approve { .. } | Op::Deny { .. });
                    let must_not_allow = req.actor.role == Role::Guest
                        || (admin_only && req.actor.role != Role::Admin);
                    if must_not_allow && !matches!(e, PlanError::NotAllowed(_)) {
                        return Err(format!("{} got {e:?}, not NotAllowed", req.actor.user));
                    }
                }
                if self.on(QUOTA) {
                    if let PlanError::OverPolicy { .. } = e {
                        if req.actor.role == Role::Admin {
                            return Err(format!("an admin was refused over policy: {e}"));
                        }
                        let is_book = matches!(req.op, Op::Book { .. });
                        if is_book && self.over != OverPolicy::Refuse {
                            return Err(format!("refused over policy under approval: {e}"));
                        }
                    }
                }
                if self.on(OPS_AS_SAID) {
                    self.check_refusal_consistent(&req, &e, &before)?;
                }
                Ok(())
            }
            Ok(changes) => {
                if req.actor.role == Role::Guest {
                    return Err(format!("a guest's {:?} was accepted", req.op));
                }
                if self.on(CHANGES_TOLD) {
                    self.check_told(&changes, &before, &after, next_id)?;
                    self.check_due()?;
                }
                if self.on(DISJOINT) {
                    self.check_disjoint(&after)?;
                }
                if self.on(ASAP_EARLIEST) {
                    check_asap_earliest(&req, &changes, &after, self.now)?;
                }
                if self.on(QUEUE_SETTLED) {
                    check_queue_settled(&after, self.now)?;
                }
                if self.on(NOBODY_LATER) {
                    check_nobody_later(req.target, &changes, &before, &after)?;
                }
                if self.on(QUOTA) {
                    self.check_quota(&req, &changes, &before, &after)?;
                }
                if self.on(QUEUE_WITHIN_POLICY) {
                    check_queue_within_policy(&changes, &before, &after, self.now)?;
                }
                self.check_as_said(&req, &changes, &before, &after)?;
                Ok(())
            }
        }
    }

    fn tick(&mut self, t: DateTime<Utc>) -> Result<(), String> {
        let before = all(&self.plan);
        let due = self.plan.next_due();
        self.now = t;
        let changes = self.plan.tick(t);
        let after = all(&self.plan);
        if self.on(CHANGES_TOLD) {
            if due.is_none_or(|d| t < d) && !changes.is_empty() {
                return Err(format!(
                    "next_due said {due:?}, yet a tick at {t} did {:?}",
                    kinds(&changes)
                ));
            }
            if let Some(d) = self.plan.next_due() {
                if d <= t {
                    return Err(format!("after a tick at {t}, next_due is still {d}"));
                }
            }
            self.check_told(&changes, &before, &after, self.plan.next_id())?;
            self.check_due()?;
            for (id, b) in &after {
                let old = &before[id];
                if b.interval != old.interval || b.gpus != old.gpus {
                    return Err(format!("the timer changed booking {id}'s time or GPUs"));
                }
            }
        }
        if self.on(DISJOINT) {
            self.check_disjoint(&after)?;
        }
        if self.on(QUEUE_SETTLED) {
            check_queue_settled(&after, self.now)?;
        }
        if self.on(NOBODY_LATER) {
            check_nobody_later(None, &changes, &before, &after)?;
        }
        if self.on(QUOTA) {
            self.check_sums(&after)?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // (a)

    fn check_disjoint(&self, after: &BTreeMap<BookingId, Booking>) -> Result<(), String> {
        let holding: Vec<&Booking> = after.values().filter(|b| b.state.holds_gpus()).collect();
        for (i, a) in holding.iter().enumerate() {
            for b in &holding[i + 1..] {
                let shared = a.gpus.iter().any(|g| b.gpus.contains(g));
                if shared && overlap_secs(&a.interval, &b.interval) > 0 {
                    return Err(format!(
                        "bookings {} ({} {:?} {}) and {} ({} {:?} {}) share a GPU at once",
                        a.id,
                        a.state,
                        a.gpus,
                        show(&a.interval),
                        b.id,
                        b.state,
                        b.gpus,
                        show(&b.interval)
                    ));
                }
            }
        }
        // The plan's conflict index answers what a scan answers.
        for k in 0..10 {
            let start = self.now + secs(k * 3 * 3600 - 3600);
            let probe = Interval {
                start,
                end: start + secs(4 * 3600 + 7),
            };
            for i in 0..MEMORY.len() {
                let g = uuid(i);
                let found: Vec<BookingId> = self
                    .plan
                    .conflicts(std::slice::from_ref(&g), &probe, None)
                    .iter()
                    .map(|c| c.booking)
                    .collect();
                let expected: Vec<BookingId> = holding
                    .iter()
                    .filter(|b| b.gpus.contains(&g) && overlap_secs(&b.interval, &probe) > 0)
                    .map(|b| b.id)
                    .collect();
                if found != expected {
                    return Err(format!(
                        "conflicts on {g} over {} found {found:?}, a scan finds {expected:?}",
                        show(&probe)
                    ));
                }
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // (d)

    fn check_sums(&self, after: &BTreeMap<BookingId, Booking>) -> Result<(), String> {
        let mut windows = weeks();
        windows.push(Interval {
            start: self.now - secs(86_400),
            end: self.now + secs(2 * 86_400 + 11),
        });
        for actor in actors() {
            let owner = actor.user.as_str();
            let mine: Vec<&Booking> = after
                .values()
                .filter(|b| b.owner == owner && counts(b.state))
                .collect();
            for w in &windows {
                let expected: i64 = mine.iter().map(|b| gpu_secs(b, w)).sum();
                let got = self.plan.gpu_seconds(owner, w, None);
                if got != expected {
                    return Err(format!(
                        "gpu_seconds({owner}, {}) = {got}, the sum is {expected}",
                        show(w)
                    ));
                }
                if let Some(first) = mine.first() {
                    let got = self.plan.gpu_seconds(owner, w, Some(first.id));
                    if got != expected - gpu_secs(first, w) {
                        return Err(format!(
                            "gpu_seconds({owner}, {}, without {}) = {got}, expected {}",
                            show(w),
                            first.id,
                            expected - gpu_secs(first, w)
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_quota(
        &self,
        req: &Request,
        changes: &[Change],
        before: &BTreeMap<BookingId, Booking>,
        after: &BTreeMap<BookingId, Booking>,
    ) -> Result<(), String> {
        self.check_sums(after)?;
        let by_user = req.actor.role != Role::Admin;
        for c in changes {
            let b = &after[&c.booking.id];
            let old = before.get(&b.id);
            // A person's change is held to what it adds to what was granted; a new booking,
            // or a waiting one, to all of it.
            let broken = match old {
                Some(old) if c.kind == ChangeKind::Changed => {
                    broken_by_change(old, b, after, self.now)
                }
                _ => broken_rules(b, after, self.now),
            };
            match (c.kind, b.state) {
                (ChangeKind::Created | ChangeKind::Changed, s)
                    if s.holds_gpus() && by_user && !broken.is_empty() =>
                {
                    return Err(format!(
                        "{} {:?} booking {} ({} GPUs, {}) for {} though it breaks {broken:?}",
                        req.actor.user,
                        c.kind,
                        b.id,
                        b.gpus.len(),
                        show(&b.interval),
                        b.owner
                    ));
                }
                (ChangeKind::Created, BookingState::PendingApproval) => {
                    if !by_user || self.over == OverPolicy::Refuse {
                        return Err(format!(
                            "booking {} waits for approval (by {}, over_policy {:?})",
                            b.id, req.actor.user, self.over
                        ));
                    }
                    if broken.is_empty() {
                        return Err(format!(
                            "booking {} ({} GPUs, {}) waits for approval ({:?}) though it breaks \
                             no rule",
                            b.id,
                            b.gpus.len(),
                            show(&b.interval),
                            b.pending_reason
                        ));
                    }
                }
                // A waiting request that was moved is judged afresh against its owner's
                // limits, whoever moved it: it keeps waiting only while it breaks one.
                (ChangeKind::Changed, BookingState::PendingApproval) if broken.is_empty() => {
                    return Err(format!(
                        "booking {} was moved to {} within its owner's limits, yet still waits \
                         ({:?})",
                        b.id,
                        show(&b.interval),
                        b.pending_reason
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Changes and the timer

    fn check_told(
        &mut self,
        changes: &[Change],
        before: &BTreeMap<BookingId, Booking>,
        after: &BTreeMap<BookingId, Booking>,
        next_id: BookingId,
    ) -> Result<(), String> {
        for c in changes {
            match before.get(&c.booking.id) {
                None => {
                    if c.kind != ChangeKind::Created || c.booking.id != next_id {
                        return Err(format!(
                            "{:?} of booking {}, which is new (next id was {next_id})",
                            c.kind, c.booking.id
                        ));
                    }
                    if c.booking.revision != 1 {
                        return Err(format!("a new booking has revision {}", c.booking.revision));
                    }
                }
                Some(old) => {
                    if c.booking.revision <= old.revision {
                        return Err(format!(
                            "{:?} of booking {} kept revision {}",
                            c.kind, c.booking.id, old.revision
                        ));
                    }
                    if c.before.is_some_and(|i| i != old.interval) {
                        return Err(format!(
                            "{:?} of booking {} says it was at {:?}, it was at {}",
                            c.kind,
                            c.booking.id,
                            c.before,
                            show(&old.interval)
                        ));
                    }
                }
            }
            self.told.insert(c.booking.id, c.booking.clone());
        }
        if &self.told != after {
            let wrong: Vec<BookingId> = after
                .keys()
                .chain(self.told.keys())
                .filter(|id| self.told.get(id) != after.get(id))
                .copied()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            return Err(format!(
                "the changes {:?} do not tell what happened to bookings {wrong:?}",
                kinds(changes)
            ));
        }
        Ok(())
    }

    /// `next_due` is exactly when the timer next has work: a tick a second before does
    /// nothing, a tick then does something.
    fn check_due(&self) -> Result<(), String> {
        let Some(due) = self.plan.next_due() else {
            let mut p = self.plan.clone();
            let far = self.now + secs(365 * 86_400);
            return match p.tick(far).as_slice() {
                [] => Ok(()),
                c => Err(format!(
                    "next_due is None, yet a tick at {far} did {:?}",
                    kinds(c)
                )),
            };
        };
        let due = due.max(self.now);
        if due > self.now {
            let early = due - secs(1);
            let c = self.plan.clone().tick(early);
            if !c.is_empty() {
                return Err(format!(
                    "next_due is {due}, yet a tick at {early} did {:?}",
                    kinds(&c)
                ));
            }
        }
        if self.plan.clone().tick(due).is_empty() {
            return Err(format!("next_due is {due}, yet a tick then does nothing"));
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Ops as said

    fn check_as_said(
        &self,
        req: &Request,
        changes: &[Change],
        before: &BTreeMap<BookingId, Booking>,
        after: &BTreeMap<BookingId, Booking>,
    ) -> Result<(), String> {
        if self.on(GPU_ORDER) {
            // `Booking::gpus` is documented as "in index order"; CUDA numbers them that way.
            for b in after.values() {
                let ix: Vec<usize> = b.gpus.iter().map(index_of).collect();
                if !ix.windows(2).all(|w| w[0] < w[1]) {
                    return Err(format!(
                        "booking {} keeps its GPUs as {:?}, not in index order",
                        b.id, b.gpus
                    ));
                }
            }
        }
        let id = req.target.expect("ops have a target");
        let new = &after[&id];
        let old = before.get(&id);
        let asked = match &req.op {
            Op::Book {
                when: When::At(i), ..
            }
            | Op::Move { interval: i, .. } => Some(*i),
            _ => None,
        };
        if let (true, Some(asked)) = (self.on(BACKWARDS), asked) {
            if asked.end <= asked.start {
                return Err(format!(
                    "{:?} asked from {} to {} and was accepted as {}",
                    req.op,
                    asked.start,
                    asked.end,
                    show(&new.interval)
                ));
            }
        }
        match (&req.op, old) {
            (Op::Extend { end, .. }, Some(old)) if self.on(EXTEND_KEEPS_START) => {
                if new.interval.start != old.interval.start {
                    return Err(format!(
                        "extending booking {id} to {end} moved its start: {} became {}",
                        show(&old.interval),
                        show(&new.interval)
                    ));
                }
                if new.interval.end <= old.interval.end {
                    return Err(format!(
                        "extending booking {id} to {end} was accepted but left it at {}",
                        show(&new.interval)
                    ));
                }
            }
            (Op::Release { .. }, Some(old)) if self.on(RELEASE_NOT_LONGER) => {
                let i = new.interval;
                if i.start != old.interval.start || i.end > old.interval.end || i.end <= i.start {
                    return Err(format!(
                        "release of booking {id} ({}, {}) at {} left it at {}",
                        old.state,
                        show(&old.interval),
                        self.now,
                        show(&i)
                    ));
                }
            }
            _ => {}
        }
        if !self.on(OPS_AS_SAID) {
            return Ok(());
        }
        match (&req.op, old) {
            (Op::Book { when, gpus, .. }, None) => {
                if let (When::At(asked), true) = (when, asked.is_some_and(|a| a.end > a.start)) {
                    if new.interval != placed(asked, self.now) {
                        return Err(format!(
                            "asked {}, booked {}",
                            show(asked),
                            show(&new.interval)
                        ));
                    }
                }
                if let GpuSelection::Named(g) = gpus {
                    let want: BTreeSet<&GpuUuid> = g.iter().collect();
                    let got: BTreeSet<&GpuUuid> = new.gpus.iter().collect();
                    if want != got {
                        return Err(format!("named {g:?}, booked {:?}", new.gpus));
                    }
                }
            }
            (Op::Move { interval, gpus, .. }, Some(old)) => {
                let want = if old.state == BookingState::Active {
                    Interval {
                        start: old.interval.start,
                        end: nearest(interval.end),
                    }
                } else {
                    placed(interval, self.now)
                };
                let want_gpus: BTreeSet<&GpuUuid> =
                    gpus.as_ref().unwrap_or(&old.gpus).iter().collect();
                let got_gpus: BTreeSet<&GpuUuid> = new.gpus.iter().collect();
                if (interval.end > interval.start && new.interval != want) || want_gpus != got_gpus
                {
                    return Err(format!(
                        "moving booking {id} ({}) to {} on {gpus:?} gave {} on {:?}",
                        old.state,
                        show(interval),
                        show(&new.interval),
                        new.gpus
                    ));
                }
            }
            (Op::Extend { end, .. }, Some(old)) => {
                let want = if old.state == BookingState::Active {
                    nearest(*end)
                } else {
                    snapped(&Interval {
                        start: old.interval.start,
                        end: *end,
                    })
                    .end
                };
                if new.interval.end != want || new.gpus != old.gpus {
                    return Err(format!(
                        "extending booking {id} to {end} gave {} on {:?}",
                        show(&new.interval),
                        new.gpus
                    ));
                }
            }
            (Op::Release { .. }, Some(old)) => {
                if old.state != BookingState::Active || new.state != BookingState::Ended {
                    return Err(format!(
                        "release of booking {id} took it from {} to {}",
                        old.state, new.state
                    ));
                }
            }
            (Op::Cancel { .. }, Some(old)) => {
                if new.state != BookingState::Cancelled || new.interval != old.interval {
                    return Err(format!("cancel of booking {id} left it {new:?}"));
                }
            }
            (Op::Approve { .. } | Op::Deny { .. }, Some(old)) => {
                let want = if matches!(req.op, Op::Approve { .. }) {
                    BookingState::Confirmed
                } else {
                    BookingState::Denied
                };
                if old.state != BookingState::PendingApproval
                    || new.state != want
                    || changes.len() != 1
                {
                    return Err(format!(
                        "{:?} took booking {id} from {} to {}",
                        req.op, old.state, new.state
                    ));
                }
                let (Op::Approve { rev, .. } | Op::Deny { rev, .. }) = req.op else {
                    unreachable!("matched above")
                };
                let seen = rev.unwrap_or(old.pending_since.unwrap_or(1));
                if seen != old.revision {
                    return Err(format!(
                        "{:?} was taken on booking {id} at revision {} (waiting since {:?})",
                        req.op, old.revision, old.pending_since
                    ));
                }
            }
            (op, old) => {
                return Err(format!("{op:?} succeeded on {old:?}"));
            }
        }
        Ok(())
    }

    /// Requests the plan must refuse whatever else is true.
    fn check_refusal_consistent(
        &self,
        req: &Request,
        e: &PlanError,
        before: &BTreeMap<BookingId, Booking>,
    ) -> Result<(), String> {
        // An admin's decision on a booking that changed since the revision it names (or,
        // naming none, since it began to wait) is refused as Changed, with the revision now.
        if let (Op::Approve { id, rev } | Op::Deny { id, rev, .. }, Role::Admin) =
            (&req.op, req.actor.role)
        {
            if let Some(b) = before.get(id) {
                let stale = match rev {
                    Some(r) => *r != b.revision,
                    None => {
                        b.state == BookingState::PendingApproval
                            && b.revision != b.pending_since.unwrap_or(1)
                    }
                };
                let told = matches!(e, PlanError::Changed { id: i, revision, shape }
                    if i == id && *revision == b.revision && shape.contains(b.state.as_str()));
                if stale != told {
                    return Err(format!(
                        "{:?} on booking {id} at revision {} (waiting since {:?}) got {e:?}",
                        req.op, b.revision, b.pending_since
                    ));
                }
            }
        }
        // A cancel of a booking that has not started, by its owner, always succeeds.
        if let Op::Cancel { id } = req.op {
            if let Some(b) = before.get(&id) {
                let may = req.actor.role == Role::Admin
                    || (req.actor.role == Role::User && b.owner == req.actor.user);
                let open = matches!(
                    b.state,
                    BookingState::Confirmed | BookingState::PendingApproval
                );
                if may && open {
                    return Err(format!("cancel of booking {id} ({}) was refused", b.state));
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// (b)

/// How many of `eligible` are free over `[t, t + d)` among the holding bookings other than
/// `except`.
fn free_count(
    bs: &BTreeMap<BookingId, Booking>,
    except: BookingId,
    eligible: &[GpuUuid],
    t: DateTime<Utc>,
    d: Duration,
) -> usize {
    let window = Interval {
        start: t,
        end: t + d,
    };
    eligible
        .iter()
        .filter(|g| {
            !bs.values().any(|b| {
                b.id != except
                    && b.state.holds_gpus()
                    && b.gpus.contains(g)
                    && overlap_secs(&b.interval, &window) > 0
            })
        })
        .count()
}

/// `Err` naming an earlier start at which `b` would fit: `now`, or the end of a holding
/// booking between `now` and `b`'s start. The queue moves a user's booking only where its
/// owner stays within the policy, so an earliest fit that breaks a limit is no error.
fn earlier_fit(
    b: &Booking,
    bs: &BTreeMap<BookingId, Booking>,
    eligible: &[GpuUuid],
    count: usize,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let d = b.interval.duration();
    let earliest = std::iter::once(now)
        .chain(
            bs.values()
                .filter(|o| o.id != b.id && o.state.holds_gpus())
                .map(|o| o.interval.end)
                .filter(|e| *e > now),
        )
        .filter(|t| *t < b.interval.start && free_count(bs, b.id, eligible, *t, d) >= count)
        .min();
    let Some(t) = earliest else {
        return Ok(());
    };
    let held_to_policy = b.asap.as_ref().is_some_and(|a| !a.exempt)
        && actors()
            .iter()
            .any(|a| a.user == b.owner && a.role == Role::User);
    if held_to_policy && b.state == BookingState::Confirmed {
        let mut moved = b.clone();
        moved.interval = Interval {
            start: t,
            end: t + d,
        };
        if !broken_rules(&moved, bs, now).is_empty() {
            return Ok(());
        }
        // Past a fit the policy refused, the queue tries the policy's grid: a booking held
        // back by its owner's limits may sit on the grid point after `t`.
        if b.interval.start <= gpubook_core::time::ceil_to(t, Duration::seconds(GRID)) {
            return Ok(());
        }
    }
    Err(format!(
        "asap booking {} ({count} of {eligible:?} for {}s) starts at {} but fits at {t}",
        b.id,
        d.num_seconds(),
        b.interval.start
    ))
}

fn asap_eligible(b: &Booking) -> Option<(Vec<GpuUuid>, usize)> {
    let a = b.asap.as_ref()?;
    if !a.named.is_empty() {
        return Some((a.named.clone(), a.named.len()));
    }
    let g = (0..MEMORY.len())
        .filter(|i| a.min_memory.is_none_or(|m| MEMORY[*i] * GIB >= m))
        .map(uuid)
        .collect();
    Some((g, a.count as usize))
}

fn check_asap_earliest(
    req: &Request,
    changes: &[Change],
    after: &BTreeMap<BookingId, Booking>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    for c in changes {
        let b = &after[&c.booking.id];
        let (eligible, count) = match (&req.op, c.kind) {
            (
                Op::Book {
                    when: When::Asap(d),
                    ..
                },
                ChangeKind::Created,
            ) => {
                let (eligible, count) = req.eligible.clone().expect("a book knows its GPUs");
                let want = (d.num_seconds() + GRID - 1) / GRID * GRID;
                let asap = b.asap.as_ref().ok_or("an asap booking lost its request")?;
                if b.interval.duration().num_seconds() != want || asap.duration_secs != want {
                    return Err(format!(
                        "asked {}s, snapped to {want}s, booked {}",
                        d.num_seconds(),
                        show(&b.interval)
                    ));
                }
                (eligible, count)
            }
            (_, ChangeKind::Approved) if b.asap.is_some() => {
                asap_eligible(b).expect("an asap booking")
            }
            _ => continue,
        };
        if b.interval.start < now {
            return Err(format!("asap booking {} starts before now", b.id));
        }
        if b.gpus.len() != count || !b.gpus.iter().all(|g| eligible.contains(g)) {
            return Err(format!(
                "asap booking {} got {:?}, asked {count} of {eligible:?}",
                b.id, b.gpus
            ));
        }
        // Whether it holds them or waits for approval, this is where the queue put it.
        earlier_fit(b, after, &eligible, count, now)?;
    }
    Ok(())
}

fn check_queue_settled(
    after: &BTreeMap<BookingId, Booking>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    for b in after.values() {
        if b.state != BookingState::Confirmed || b.interval.start <= now {
            continue;
        }
        let Some((eligible, count)) = asap_eligible(b) else {
            continue;
        };
        earlier_fit(b, after, &eligible, count, now)?;
    }
    Ok(())
}

/// A booking the queue moves earlier stays within its owner's limits, unless it was beyond
/// them before (an admin approved it so).
fn check_queue_within_policy(
    changes: &[Change],
    before: &BTreeMap<BookingId, Booking>,
    after: &BTreeMap<BookingId, Booking>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let users = actors().map(|a| (a.user, a.role));
    for c in changes
        .iter()
        .filter(|c| c.kind == ChangeKind::MovedEarlier)
    {
        let b = &after[&c.booking.id];
        if !users.iter().any(|(u, r)| *u == b.owner && *r == Role::User) {
            continue;
        }
        let was = broken_rules(&before[&b.id], before, now);
        let is = broken_rules(b, after, now);
        if was.is_empty() && !is.is_empty() {
            return Err(format!(
                "the queue moved {}'s booking {} from {} to {}, which breaks {is:?}",
                b.owner,
                b.id,
                show(&before[&b.id].interval),
                show(&b.interval)
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (c)

fn check_nobody_later(
    target: Option<BookingId>,
    changes: &[Change],
    before: &BTreeMap<BookingId, Booking>,
    after: &BTreeMap<BookingId, Booking>,
) -> Result<(), String> {
    for c in changes
        .iter()
        .filter(|c| c.kind == ChangeKind::MovedEarlier)
    {
        let was = c.before.ok_or("MovedEarlier without the interval before")?;
        let now = c.booking.interval;
        if now.start >= was.start || now.duration() != was.duration() {
            return Err(format!(
                "MovedEarlier took booking {} from {} to {}",
                c.booking.id,
                show(&was),
                show(&now)
            ));
        }
    }
    for (id, old) in before {
        if Some(*id) == target {
            continue;
        }
        let new = &after[id];
        if new.interval == old.interval {
            continue;
        }
        let told = changes
            .iter()
            .any(|c| c.kind == ChangeKind::MovedEarlier && c.booking.id == *id);
        if new.interval.start > old.interval.start || !told {
            return Err(format!(
                "booking {id} of {} went from {} to {} ({:?})",
                old.owner,
                show(&old.interval),
                show(&new.interval),
                kinds(changes)
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Brute-force helpers

fn overlap_secs(a: &Interval, b: &Interval) -> i64 {
    let start = a.start.max(b.start);
    let end = a.end.min(b.end);
    (end - start).num_seconds().max(0)
}

fn gpu_secs(b: &Booking, w: &Interval) -> i64 {
    overlap_secs(&b.interval, w) * b.gpus.len() as i64
}

fn counts(s: BookingState) -> bool {
    matches!(
        s,
        BookingState::Confirmed | BookingState::Active | BookingState::Ended
    )
}

fn weeks() -> Vec<Interval> {
    let first: DateTime<Utc> = FIRST_MONDAY.parse().expect("RFC 3339");
    (0..WEEKS)
        .map(|k| Interval {
            start: first + secs(k * 7 * 86_400),
            end: first + secs((k + 1) * 7 * 86_400),
        })
        .collect()
}

fn floor(t: DateTime<Utc>) -> DateTime<Utc> {
    let s = t.timestamp();
    DateTime::from_timestamp(s.div_euclid(GRID) * GRID, 0).expect("in range")
}

/// The grid point nearest `t` (halfway rounds up).
fn nearest(t: DateTime<Utc>) -> DateTime<Utc> {
    floor(t + secs(GRID / 2))
}

/// The grid point at or after `t`.
fn ceil(t: DateTime<Utc>) -> DateTime<Utc> {
    let f = floor(t);
    if f == t {
        t
    } else {
        f + secs(GRID)
    }
}

/// An interval as the plan books it at `now`: a start at or before now, nearest to a grid
/// point not after it, or off the grid within a minute after it is now itself; a later one
/// and the end are at their nearest grid points; the end is at least the first grid point
/// after the start.
fn placed(i: &Interval, now: DateTime<Utc>) -> Interval {
    let rounded = nearest(i.start);
    let off_grid_soon = i.start <= now + secs(60) && floor(i.start) != i.start;
    let start = if i.start <= now || rounded <= now || off_grid_soon {
        now
    } else {
        rounded
    };
    Interval {
        start,
        end: nearest(i.end).max(ceil(start + secs(1))),
    }
}

/// An interval snapped to the grid: each end at its nearest grid point, at least one slot.
fn snapped(i: &Interval) -> Interval {
    let start = nearest(i.start);
    Interval {
        start,
        end: nearest(i.end).max(start + secs(GRID)),
    }
}

/// The limits `b` breaks for its owner, counted over every other booking in `bs`.
fn broken_rules(b: &Booking, bs: &BTreeMap<BookingId, Booking>, now: DateTime<Utc>) -> Vec<String> {
    let mut broken = Vec::new();
    let d = b.interval.duration().num_seconds();
    if d > MAX_BOOKING {
        broken.push(format!("max_booking: {d}s"));
    }
    if b.asap.is_none() && b.interval.start > now + secs(MAX_AHEAD) {
        broken.push(format!("max_ahead: starts {}", b.interval.start));
    }
    let others: Vec<&Booking> = bs
        .values()
        .filter(|o| o.owner == b.owner && o.id != b.id)
        .collect();
    let weeks = weeks();
    assert!(
        weeks[0].start <= b.interval.start && b.interval.end <= weeks[weeks.len() - 1].end,
        "booking {} at {} is outside the weeks the test counts",
        b.id,
        show(&b.interval)
    );
    for w in &weeks {
        let new = gpu_secs(b, w);
        if new == 0 {
            continue;
        }
        let used: i64 = others
            .iter()
            .filter(|o| counts(o.state))
            .map(|o| gpu_secs(o, w))
            .sum();
        if used + new > QUOTA_HOURS * 3600 {
            broken.push(format!(
                "weekly quota: {used} + {new} GPU-seconds in the week of {}",
                w.start
            ));
        }
    }
    let holding: Vec<&&Booking> = others.iter().filter(|o| o.state.holds_gpus()).collect();
    let instants = std::iter::once(b.interval.start).chain(
        holding
            .iter()
            .map(|o| o.interval.start)
            .filter(|t| b.interval.contains(*t)),
    );
    for t in instants {
        let at_once: usize = b.gpus.len()
            + holding
                .iter()
                .filter(|o| o.interval.contains(t))
                .map(|o| o.gpus.len())
                .sum::<usize>();
        if at_once > MAX_AT_ONCE {
            broken.push(format!("max_gpus_at_once: {at_once} at {t}"));
            break;
        }
    }
    broken
}

/// The limits a user's change of `old` into `b` breaks, counting only what it adds to what
/// was granted: GPU-seconds added to a week, GPUs added at an instant (a new part of the
/// interval, or more GPUs), a longer length, a later start beyond `max_ahead`. A booking that
/// did not hold its GPUs was granted nothing: all of it counts.
fn broken_by_change(
    old: &Booking,
    b: &Booking,
    bs: &BTreeMap<BookingId, Booking>,
    now: DateTime<Utc>,
) -> Vec<String> {
    if !old.state.holds_gpus() {
        return broken_rules(b, bs, now);
    }
    let mut broken = Vec::new();
    let d = b.interval.duration();
    if d.num_seconds() > MAX_BOOKING && d > old.interval.duration() {
        broken.push(format!("max_booking: {}s", d.num_seconds()));
    }
    let ahead = b.interval.start > now + secs(MAX_AHEAD);
    if b.asap.is_none() && ahead && b.interval.start > old.interval.start {
        broken.push(format!("max_ahead: starts {}", b.interval.start));
    }
    let others: Vec<&Booking> = bs
        .values()
        .filter(|o| o.owner == b.owner && o.id != b.id)
        .collect();
    for w in &weeks() {
        let new = gpu_secs(b, w);
        if new <= gpu_secs(old, w) {
            continue;
        }
        let used: i64 = others
            .iter()
            .filter(|o| counts(o.state))
            .map(|o| gpu_secs(o, w))
            .sum();
        if used + new > QUOTA_HOURS * 3600 {
            broken.push(format!(
                "weekly quota: {used} + {new} GPU-seconds in the week of {}",
                w.start
            ));
        }
    }
    let more_gpus = b.gpus.len() > old.gpus.len();
    let adds =
        |t: DateTime<Utc>| b.interval.contains(t) && (more_gpus || !old.interval.contains(t));
    let holding: Vec<&&Booking> = others.iter().filter(|o| o.state.holds_gpus()).collect();
    let instants = [b.interval.start, old.interval.end]
        .into_iter()
        .chain(holding.iter().map(|o| o.interval.start))
        .filter(|t| adds(*t));
    for t in instants {
        let at_once: usize = b.gpus.len()
            + holding
                .iter()
                .filter(|o| o.interval.contains(t))
                .map(|o| o.gpus.len())
                .sum::<usize>();
        if at_once > MAX_AT_ONCE {
            broken.push(format!("max_gpus_at_once: {at_once} at {t}"));
            break;
        }
    }
    broken
}

fn kinds(changes: &[Change]) -> Vec<(ChangeKind, BookingId)> {
    changes.iter().map(|c| (c.kind, c.booking.id)).collect()
}

fn show(i: &Interval) -> String {
    format!(
        "[{} .. {})",
        i.start.format("%a %d %H:%M:%S"),
        i.end.format("%a %d %H:%M:%S")
    )
}

/// Found by `the_asap_queue_is_always_settled` in CI (2026-11-27): after a cancel and the
/// timer, a waiting "as soon as possible" booking of three GPUs stayed 5 minutes later than
/// the moment its GPUs were free.
#[test]
fn regression_the_queue_settles_after_a_cancel_off_the_grid() {
    let steps = vec![
        Step::Book {
            who: 0,
            sel: Sel::Named(vec![0]),
            when: WhenSpec::Asap { len: 0 },
        },
        Step::Book {
            who: 1,
            sel: Sel::Named(vec![3]),
            when: WhenSpec::Asap { len: 3600 },
        },
        Step::Book {
            who: 1,
            sel: Sel::Named(vec![0, 1]),
            when: WhenSpec::Asap { len: 900 },
        },
        Step::Tick { advance: 450 },
        Step::Book {
            who: 0,
            sel: Sel::Named(vec![2]),
            when: WhenSpec::At {
                start: 10800,
                len: 30600,
            },
        },
        Step::Book {
            who: 1,
            sel: Sel::Named(vec![0, 1, 2]),
            when: WhenSpec::Asap { len: 13500 },
        },
        Step::Tick { advance: 3150 },
        Step::Cancel {
            who: 0,
            target: Target {
                pool: Pool::Any,
                pick: 230,
            },
        },
        Step::TickToDue,
    ];
    if let Err(e) = run(true, &steps, QUEUE_SETTLED) {
        panic!("{e}");
    }
}

/// Found by `a_backwards_request_is_refused` with 30,000 histories: a started booking moved
/// to an end one second before its start was accepted, the end rounded up to the grid.
#[test]
fn regression_a_started_booking_moved_backwards_is_refused() {
    let steps = vec![
        Step::Tick { advance: 2474 },
        Step::Book {
            who: 2,
            sel: Sel::Named(vec![2]),
            when: WhenSpec::Asap { len: 900 },
        },
        Step::TickToDue,
        Step::Move {
            who: 2,
            target: Target {
                pool: Pool::Any,
                pick: 0,
            },
            shift: 0,
            len: Some(-1),
            gpus: None,
        },
    ];
    if let Err(e) = run(false, &steps, BACKWARDS) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Times and durations at the edges of what chrono can hold

/// The last whole second chrono can hold.
fn last_second() -> DateTime<Utc> {
    DateTime::from_timestamp(DateTime::<Utc>::MAX_UTC.timestamp(), 0).expect("in range")
}

/// A time anywhere: the ends of chrono's range, year 9999, any second it can hold, years or
/// hours around T0.
fn wild_time() -> BoxedStrategy<DateTime<Utc>> {
    let (lo, hi) = (
        DateTime::<Utc>::MIN_UTC.timestamp(),
        DateTime::<Utc>::MAX_UTC.timestamp(),
    );
    prop_oneof![
        Just(DateTime::<Utc>::MIN_UTC),
        Just(DateTime::<Utc>::MAX_UTC),
        Just(last_second()),
        Just("9999-12-31T23:59:59Z".parse().expect("RFC 3339")),
        (lo..=hi).prop_map(|s| DateTime::from_timestamp(s, 0).expect("in range")),
        (-20 * 366 * 86_400i64..=20 * 366 * 86_400).prop_map(|s| t0() + secs(s)),
        (-86_400i64..=86_400).prop_map(|s| t0() + secs(s)),
    ]
    .boxed()
}

/// A duration anywhere: chrono's extremes, any number of milliseconds it can hold, centuries,
/// or hours.
fn wild_duration() -> BoxedStrategy<Duration> {
    prop_oneof![
        Just(Duration::MAX),
        Just(Duration::MIN),
        Just(Duration::zero()),
        any::<i64>().prop_filter_map("a duration", Duration::try_milliseconds),
        (1i64..=100_000).prop_map(|d| Duration::days(d * 365)),
        (-3600i64..=10 * 3600).prop_map(secs),
    ]
    .boxed()
}

/// A policy whose fields may hold anything the struct can (one not read from a file).
fn wild_policy() -> BoxedStrategy<Policy> {
    let secs = || {
        prop_oneof![
            Just(i64::MAX),
            Just(i64::MIN),
            Just(0i64),
            Just(-1i64),
            1i64..=400 * 86_400
        ]
    };
    let limit = || {
        prop_oneof![
            Just(None),
            Just(Some(0u32)),
            Just(Some(u32::MAX)),
            (1u32..=8).prop_map(Some)
        ]
    };
    prop_oneof![
        Just(policy(OverPolicy::Approval)),
        Just(policy(OverPolicy::Refuse)),
        (
            (
                secs(),
                proptest::option::of(secs()),
                proptest::option::of(secs())
            ),
            (limit(), limit(), any::<bool>()),
            (secs(), secs(), any::<u32>()),
        )
            .prop_map(
                |((grid, booking, ahead), (quota, at_once, refuse), (warning, grace, pending))| {
                    Policy {
                        granularity_secs: grid,
                        max_booking_secs: booking,
                        max_ahead_secs: ahead,
                        weekly_quota_gpu_hours: quota,
                        max_gpus_at_once: at_once,
                        over_policy: if refuse {
                            OverPolicy::Refuse
                        } else {
                            OverPolicy::Approval
                        },
                        idle_after_secs: Some(warning),
                        end_warning_secs: warning,
                        max_grace_secs: grace,
                        max_pending: pending,
                        ..Policy::default()
                    }
                }
            ),
    ]
    .boxed()
}

/// A booking as storage could hand it over: any times (start before end), any state, an
/// "as soon as possible" request of any length.
fn wild_booking() -> impl Strategy<Value = Booking> {
    let state = proptest::sample::select(vec![
        BookingState::PendingApproval,
        BookingState::Confirmed,
        BookingState::Active,
        BookingState::Ended,
    ]);
    (
        (wild_time(), wild_time()),
        proptest::sample::subsequence(vec![0usize, 1, 2, 3], 1..=4),
        state,
        1usize..=2,
        proptest::option::of(any::<i64>()),
        any::<u32>(),
    )
        .prop_filter_map(
            "an interval forwards",
            |((a, b), gpus, state, who, asap, revision)| {
                let interval = Interval::new(a.min(b), a.max(b))?;
                Some(Booking {
                    id: BookingId(0),
                    owner: actors()[who].user.clone(),
                    gpus: gpus.into_iter().map(uuid).collect(),
                    interval,
                    title: "stored".into(),
                    state,
                    job: None,
                    asap: asap.map(|duration_secs| gpubook_core::AsapRequest {
                        count: 1,
                        min_memory: None,
                        duration_secs,
                        asked_at: t0(),
                        named: Vec::new(),
                        exempt: false,
                        node: None,
                    }),
                    pending_reason: None,
                    pending_since: None,
                    created_at: t0(),
                    revision,
                    warned_start: false,
                    warned_end: false,
                    run: None,
                    usage: None,
                })
            },
        )
}

/// One thing done to the plan at a wild time.
#[derive(Debug, Clone)]
enum Wild {
    BookAt {
        who: usize,
        gpus: Vec<usize>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    BookAsap {
        who: usize,
        gpus: Vec<usize>,
        d: Duration,
    },
    Move {
        who: usize,
        pick: usize,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    Extend {
        who: usize,
        pick: usize,
        end: DateTime<Utc>,
    },
    Release {
        who: usize,
        pick: usize,
    },
    Cancel {
        who: usize,
        pick: usize,
    },
    Approve {
        pick: usize,
        rev: Option<u32>,
    },
    Deny {
        pick: usize,
        rev: Option<u32>,
    },
    Tick,
    Place {
        count: usize,
        d: Duration,
    },
    Probe {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

fn wild_step() -> impl Strategy<Value = (DateTime<Utc>, Wild)> {
    let gpus = || proptest::sample::subsequence(vec![0usize, 1, 2, 3], 1..=4);
    let who = || 0usize..=2;
    let pick = || 0usize..100;
    let rev = || proptest::option::of(prop_oneof![Just(u32::MAX), 0u32..=4]);
    let step = prop_oneof![
        (who(), gpus(), wild_time(), wild_time()).prop_map(|(who, gpus, start, end)| {
            Wild::BookAt {
                who,
                gpus,
                start,
                end,
            }
        }),
        (who(), gpus(), wild_duration()).prop_map(|(who, gpus, d)| Wild::BookAsap { who, gpus, d }),
        (who(), pick(), wild_time(), wild_time()).prop_map(|(who, pick, start, end)| Wild::Move {
            who,
            pick,
            start,
            end
        }),
        (who(), pick(), wild_time()).prop_map(|(who, pick, end)| Wild::Extend { who, pick, end }),
        (who(), pick()).prop_map(|(who, pick)| Wild::Release { who, pick }),
        (who(), pick()).prop_map(|(who, pick)| Wild::Cancel { who, pick }),
        (pick(), rev()).prop_map(|(pick, rev)| Wild::Approve { pick, rev }),
        (pick(), rev()).prop_map(|(pick, rev)| Wild::Deny { pick, rev }),
        Just(Wild::Tick),
        (0usize..=5, wild_duration()).prop_map(|(count, d)| Wild::Place { count, d }),
        (wild_time(), wild_time()).prop_map(|(start, end)| Wild::Probe { start, end }),
    ];
    (wild_time(), step)
}

proptest! {
    #![proptest_config(config())]

    /// Extreme times (chrono's ends, year 9999), huge and negative durations, a policy with
    /// any values and bookings stored at any times: no op, no tick, no `next_due` panics, and
    /// a refused op leaves the plan exactly as it was.
    #[test]
    fn extreme_times_and_durations_never_panic_and_a_refusal_changes_nothing(
        policy in wild_policy(),
        stored in proptest::collection::vec(wild_booking(), 0..=6),
        steps in proptest::collection::vec(wild_step(), 1..=24),
    ) {
        let stored = stored
            .into_iter()
            .enumerate()
            .map(|(i, b)| Booking { id: BookingId(i as u64 + 1), ..b })
            .collect();
        let mut plan = Plan::new(server(), policy, stored);
        let actors = actors();
        for (n, (now, step)) in steps.into_iter().enumerate() {
            plan.next_due();
            let ids: Vec<BookingId> = all(&plan).keys().copied().collect();
            let id = |pick: usize| ids.get(pick % ids.len().max(1)).copied().unwrap_or(BookingId(1));
            let named = |g: &[usize]| GpuSelection::Named(g.iter().map(|i| uuid(*i)).collect());
            let admin = actors[0].clone();
            let (actor, op) = match &step {
                Wild::BookAt { who, gpus, start, end } => (who, Op::Book {
                    gpus: named(gpus),
                    when: When::At(Interval { start: *start, end: *end }),
                    title: "wild".into(),
                    job: None,
                }),
                Wild::BookAsap { who, gpus, d } => (who, Op::Book {
                    gpus: named(gpus),
                    when: When::Asap(*d),
                    title: "wild".into(),
                    job: None,
                }),
                Wild::Move { who, pick, start, end } => (who, Op::Move {
                    id: id(*pick),
                    interval: Interval { start: *start, end: *end },
                    gpus: None,
                }),
                Wild::Extend { who, pick, end } => (who, Op::Extend { id: id(*pick), end: *end }),
                Wild::Release { who, pick } => (who, Op::Release { id: id(*pick) }),
                Wild::Cancel { who, pick } => (who, Op::Cancel { id: id(*pick) }),
                Wild::Approve { pick, rev } => (&0, Op::Approve { id: id(*pick), rev: *rev }),
                Wild::Deny { pick, rev } => (&0, Op::Deny { id: id(*pick), reason: None, rev: *rev }),
                Wild::Tick => {
                    plan.tick(now);
                    continue;
                }
                Wild::Place { count, d } => {
                    let all: Vec<GpuUuid> = (0..MEMORY.len()).map(uuid).collect();
                    plan.place(&all, *count, *d, now);
                    continue;
                }
                Wild::Probe { start, end } => {
                    let window = Interval { start: *start, end: *end };
                    plan.conflicts(&[uuid(0), uuid(1)], &window, None);
                    for a in &actors {
                        plan.gpu_seconds(&a.user, &window, None);
                    }
                    continue;
                }
            };
            let actor = if matches!(op, Op::Approve { .. } | Op::Deny { .. }) {
                admin
            } else {
                actors[*actor].clone()
            };
            let before = (all(&plan), plan.next_id());
            if let Err(e) = plan.apply(&actor, op.clone(), now) {
                prop_assert_eq!(
                    &(all(&plan), plan.next_id()),
                    &before,
                    "step {}: {:?} at {} was refused ({}) but changed the plan",
                    n,
                    op,
                    now,
                    e
                );
            }
        }
        plan.next_due();
        plan.tick(DateTime::<Utc>::MAX_UTC);
        plan.tick(DateTime::<Utc>::MIN_UTC);
    }

    /// A booking the plan accepts fits a listing page: its title and job take at most
    /// `MAX_BOOKING_BYTES` in JSON, however their bytes are escaped; one clearly over it is
    /// refused.
    #[test]
    fn an_accepted_booking_fits_a_listing_page(
        title in "[a-z \"\\\\]{0,200}",
        command in proptest::collection::vec((0usize..6, 1usize..=1_300), 1..=6),
        vars in proptest::collection::vec((0usize..=4000, 0usize..3), 0..=40),
    ) {
        // Runs of plain, escaped and two-byte characters: at most 16 KiB, the command's own
        // bound, however they mix.
        let chars = ['a', '"', '\\', '\n', '\u{1}', 'é'];
        let command: String = command.iter().map(|(c, n)| chars[*c].to_string().repeat(*n)).collect();
        let fill = ["x", "\u{1}", "\""];
        let env = vars
            .iter()
            .enumerate()
            .map(|(i, (len, kind))| (format!("V{i:03}"), fill[*kind].repeat(*len)))
            .collect();
        let job = gpubook_core::JobSpec {
            command: format!("run {command}"),
            cwd: Some("/home/bob/runs".into()),
            env,
            end_signal: Some("SIGUSR1".into()),
            grace_secs: Some(60),
            keep_slot: true,
            ..Default::default()
        };
        let json = serde_json::to_vec(&job).expect("json").len()
            + serde_json::to_vec(&title).expect("json").len();
        let mut plan = Plan::new(server(), Policy::default(), Vec::new());
        let op = Op::Book {
            gpus: GpuSelection::Named(vec![uuid(0)]),
            when: When::Asap(secs(3600)),
            title: title.clone(),
            job: Some(job),
        };
        let bob = actors()[1].clone();
        match plan.apply(&bob, op, t0()) {
            Ok(_) => prop_assert!(
                json <= gpubook_core::MAX_BOOKING_BYTES,
                "accepted a booking of {} bytes",
                json
            ),
            Err(e) => {
                let too_big = e.to_string().contains("fit");
                prop_assert!(too_big, "refused for another reason: {}", e);
                // The allowance for names and punctuation is small: a booking well within
                // the bound is never refused for its size.
                prop_assert!(json > gpubook_core::MAX_BOOKING_BYTES - 200, "{} bytes: {}", json, e);
            }
        }
    }
}
