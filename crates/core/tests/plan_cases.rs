//! One test per thing a person can get wrong when asking the plan for a change, each asserting
//! the exact `PlanError` variant and that the plan did not change; then the happy paths that
//! people rely on: cancel pulls the queue forward, release, approvals, and the slot timer;
//! then approvals that name a revision, the policy's bounds on jobs and waiting requests, the
//! decisions on a change, and times at the edges of what a clock can say.

use chrono::{DateTime, Duration, Utc};
use gpubook_core::plan::{END_WARNING, START_WARNING};
use gpubook_core::policy::OverPolicy;
use gpubook_core::{
    Actor, Booking, BookingId, BookingState, ChangeKind, Conflict, Gpu, GpuSelection, GpuUuid,
    Interval, JobSpec, Op, Outside, Plan, PlanError, Policy, Role, Rule, When, MAX_BOOKING_BYTES,
};
use std::collections::BTreeMap;

const GIB: u64 = 1 << 30;

/// Monday 2026-03-02 09:00 UTC: the start of a quota week is that day's midnight.
fn now() -> DateTime<Utc> {
    at("2026-03-02T09:00:00Z")
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("a time in RFC 3339")
}

/// Today (2026-03-02) at `hhmm` ("10:30" or "10:30:15").
fn today(hhmm: &str) -> DateTime<Utc> {
    let t = if hhmm.len() == 5 {
        format!("{hhmm}:00")
    } else {
        hhmm.to_string()
    };
    at(&format!("2026-03-02T{t}Z"))
}

/// `[start, end)` as given, even when `end` is not after `start` (what a client can send).
fn span(start: DateTime<Utc>, end: DateTime<Utc>) -> Interval {
    Interval { start, end }
}

fn uuid(i: usize) -> GpuUuid {
    GpuUuid(format!("GPU-{i}"))
}

/// Four GPUs: two of 80 GiB, one of 40 GiB, one of 24 GiB.
fn server() -> Vec<Gpu> {
    [80, 80, 40, 24]
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

fn plan(policy: Policy) -> Plan {
    Plan::new(server(), policy, Vec::new())
}

fn admin() -> Actor {
    Actor {
        user: "alice".into(),
        role: Role::Admin,
    }
}

fn user(name: &str) -> Actor {
    Actor {
        user: name.into(),
        role: Role::User,
    }
}

fn guest() -> Actor {
    Actor {
        user: "gus".into(),
        role: Role::Guest,
    }
}

fn named(ids: &[usize]) -> GpuSelection {
    GpuSelection::Named(ids.iter().map(|i| uuid(*i)).collect())
}

fn book_at(gpus: GpuSelection, start: DateTime<Utc>, end: DateTime<Utc>) -> Op {
    Op::Book {
        gpus,
        when: When::At(span(start, end)),
        title: "training".into(),
        job: None,
    }
}

fn book_asap(gpus: GpuSelection, d: Duration) -> Op {
    Op::Book {
        gpus,
        when: When::Asap(d),
        title: "queued".into(),
        job: None,
    }
}

/// Applies `op` and returns the one booking it created.
fn create(p: &mut Plan, who: &Actor, op: Op, t: DateTime<Utc>) -> Booking {
    let changes = p.apply(who, op, t).expect("the booking is accepted");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].kind, ChangeKind::Created);
    changes[0].booking.clone()
}

/// Every booking, in id order, and the next id: what "nothing changed" compares.
fn snapshot(p: &Plan) -> (Vec<Booking>, BookingId) {
    let mut all: Vec<Booking> = p.bookings().cloned().collect();
    all.sort_by_key(|b| b.id);
    (all, p.next_id())
}

/// Applies `op`, which must fail, and checks that the plan is exactly as it was.
fn refused(p: &mut Plan, who: &Actor, op: Op, t: DateTime<Utc>) -> PlanError {
    let before = snapshot(p);
    let err = p
        .apply(who, op.clone(), t)
        .expect_err(&format!("{op:?} by {} must be refused", who.user));
    assert_eq!(snapshot(p), before, "a refused {op:?} changed the plan");
    err
}

fn assert_invalid(e: PlanError) {
    assert!(
        matches!(e, PlanError::Invalid(_)),
        "expected Invalid, got {e:?}"
    );
}

fn assert_not_allowed(e: PlanError) {
    assert!(
        matches!(e, PlanError::NotAllowed(_)),
        "expected NotAllowed, got {e:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn end_not_after_start_is_invalid() {
    let mut p = plan(Policy::default());
    let e = refused(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("11:00"), today("10:00")),
        now(),
    );
    assert_invalid(e);
    let e = refused(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("11:00"), today("11:00")),
        now(),
    );
    assert_invalid(e);
    let e = refused(
        &mut p,
        &user("bob"),
        book_asap(named(&[0]), Duration::zero()),
        now(),
    );
    assert_invalid(e);
}

/// Snapping to the 15-minute grid must not turn a backwards request into a booking:
/// 11:10 → 11:05 is refused like 11:00 → 10:00 is.
#[test]
fn end_before_start_inside_one_grid_cell_is_invalid() {
    let mut p = plan(Policy::default());
    let e = refused(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("11:10"), today("11:05")),
        now(),
    );
    assert_invalid(e);
    let e = refused(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("11:10"), today("11:10")),
        now(),
    );
    assert_invalid(e);
}

#[test]
fn start_in_the_past_is_invalid() {
    let mut p = plan(Policy::default());
    let e = refused(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("08:00"), today("10:00")),
        now(),
    );
    assert_invalid(e);
    // Moving a booking into the past is refused the same way.
    let b = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("11:00")),
        now(),
    );
    let e = refused(
        &mut p,
        &user("bob"),
        Op::Move {
            id: b.id,
            interval: span(today("07:00"), today("08:00")),
            gpus: None,
        },
        now(),
    );
    assert_invalid(e);
}

#[test]
fn unknown_gpu_is_not_found() {
    let mut p = plan(Policy::default());
    let op = Op::Book {
        gpus: GpuSelection::Named(vec![uuid(0), GpuUuid("GPU-nope".into())]),
        when: When::At(span(today("10:00"), today("11:00"))),
        title: String::new(),
        job: None,
    };
    let e = refused(&mut p, &user("bob"), op, now());
    assert!(matches!(e, PlanError::NotFound(_)), "{e:?}");
}

#[test]
fn repeated_gpu_is_invalid() {
    let mut p = plan(Policy::default());
    let e = refused(
        &mut p,
        &user("bob"),
        book_at(named(&[1, 2, 1]), today("10:00"), today("11:00")),
        now(),
    );
    assert_invalid(e);
}

#[test]
fn zero_gpus_is_invalid() {
    let mut p = plan(Policy::default());
    let e = refused(
        &mut p,
        &user("bob"),
        book_at(named(&[]), today("10:00"), today("11:00")),
        now(),
    );
    assert_invalid(e);
    let none = GpuSelection::Count {
        count: 0,
        min_memory: None,
    };
    let e = refused(
        &mut p,
        &user("bob"),
        book_at(none.clone(), today("10:00"), today("11:00")),
        now(),
    );
    assert_invalid(e);
    let e = refused(
        &mut p,
        &user("bob"),
        book_asap(none, Duration::hours(1)),
        now(),
    );
    assert_invalid(e);
}

#[test]
fn more_gpus_than_the_server_has_is_invalid() {
    let mut p = plan(Policy::default());
    let five = GpuSelection::Count {
        count: 5,
        min_memory: None,
    };
    let e = refused(
        &mut p,
        &user("bob"),
        book_at(five.clone(), today("10:00"), today("11:00")),
        now(),
    );
    assert_invalid(e);
    let e = refused(
        &mut p,
        &user("bob"),
        book_asap(five, Duration::hours(1)),
        now(),
    );
    assert_invalid(e);
    // Three GPUs exist, but only two have 80 GiB.
    let big = GpuSelection::Count {
        count: 3,
        min_memory: Some(80 * GIB),
    };
    let e = refused(
        &mut p,
        &user("bob"),
        book_at(big, today("10:00"), today("11:00")),
        now(),
    );
    assert_invalid(e);
}

#[test]
fn overlap_is_a_conflict_naming_owner_gpus_and_times() {
    let mut p = plan(Policy::default());
    let bob = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0, 1]), today("10:00"), today("12:00")),
        now(),
    );
    let e = refused(
        &mut p,
        &user("carol"),
        book_at(named(&[1, 2]), today("11:00"), today("13:00")),
        now(),
    );
    assert_eq!(
        e,
        PlanError::Conflict(vec![Conflict {
            booking: bob.id,
            owner: "bob".into(),
            gpus: vec![uuid(1)],
            interval: span(today("10:00"), today("12:00")),
            title: "training".into(),
        }])
    );
    let text = e.to_string();
    for part in [
        "bob",
        "GPU-1",
        "2026-03-02 10:00 UTC",
        "2026-03-02 12:00 UTC",
    ] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
    // Touching is not overlapping: [12:00, 13:00) fits right after.
    create(
        &mut p,
        &user("carol"),
        book_at(named(&[1, 2]), today("12:00"), today("13:00")),
        now(),
    );
    // A count that cannot be met names every booking in the way.
    let e = refused(
        &mut p,
        &user("carol"),
        book_at(
            GpuSelection::Count {
                count: 3,
                min_memory: None,
            },
            today("11:30"),
            today("12:30"),
        ),
        now(),
    );
    let PlanError::Conflict(c) = e else {
        panic!("expected Conflict, got {e:?}")
    };
    assert_eq!(c.len(), 2, "{c:?}");
}

#[test]
fn changing_someone_elses_booking_as_a_user_is_not_allowed() {
    let mut p = plan(Policy::default());
    let bob = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("11:00")),
        now(),
    );
    let carol = user("carol");
    let ops = [
        Op::Move {
            id: bob.id,
            interval: span(today("12:00"), today("13:00")),
            gpus: None,
        },
        Op::Extend {
            id: bob.id,
            end: today("12:00"),
        },
        Op::Cancel { id: bob.id },
        Op::Release { id: bob.id },
    ];
    for op in ops.clone() {
        assert_not_allowed(refused(&mut p, &carol, op, now()));
    }
    // Not even once it has started.
    p.tick(today("10:00"));
    assert_not_allowed(refused(
        &mut p,
        &carol,
        Op::Release { id: bob.id },
        today("10:01"),
    ));
    // An admin may.
    let changes = p
        .apply(&admin(), Op::Release { id: bob.id }, today("10:30"))
        .expect("an admin releases anyone's booking");
    assert_eq!(changes[0].kind, ChangeKind::Released);
}

#[test]
fn booking_as_a_guest_is_not_allowed() {
    let mut p = plan(Policy::default());
    let e = refused(
        &mut p,
        &guest(),
        book_at(named(&[0]), today("10:00"), today("11:00")),
        now(),
    );
    assert_not_allowed(e);
    let e = refused(
        &mut p,
        &guest(),
        book_asap(named(&[0]), Duration::hours(1)),
        now(),
    );
    assert_not_allowed(e);
    let bob = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("11:00")),
        now(),
    );
    assert_not_allowed(refused(&mut p, &guest(), Op::Cancel { id: bob.id }, now()));
}

#[test]
fn unknown_booking_is_not_found() {
    let mut p = plan(Policy::default());
    for op in [
        Op::Cancel { id: BookingId(42) },
        Op::Release { id: BookingId(42) },
        Op::Extend {
            id: BookingId(42),
            end: today("12:00"),
        },
        Op::Approve {
            id: BookingId(42),
            rev: None,
        },
    ] {
        let e = refused(&mut p, &admin(), op, now());
        assert!(matches!(e, PlanError::NotFound(_)), "{e:?}");
    }
}

fn quota_policy(over_policy: OverPolicy) -> Policy {
    Policy {
        weekly_quota_gpu_hours: Some(10),
        over_policy,
        ..Policy::default()
    }
}

#[test]
fn over_quota_waits_for_approval() {
    let mut p = plan(quota_policy(OverPolicy::Approval));
    let first = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0, 1]), today("10:00"), today("14:00")),
        now(),
    );
    assert_eq!(first.state, BookingState::Confirmed);
    // 8 GPU-hours used; 2 GPUs × 2 h more makes 12 > 10.
    let second = create(
        &mut p,
        &user("bob"),
        book_at(named(&[2, 3]), today("15:00"), today("17:00")),
        now(),
    );
    assert_eq!(second.state, BookingState::PendingApproval);
    let reason = second.pending_reason.expect("a reason");
    assert!(reason.contains("quota"), "{reason}");
    // Waiting, it holds nothing: another person books the same GPUs then.
    create(
        &mut p,
        &user("carol"),
        book_at(named(&[2, 3]), today("15:00"), today("17:00")),
        now(),
    );
    // The quota is per week: next week is fine.
    let next_week = create(
        &mut p,
        &user("bob"),
        book_at(
            named(&[2, 3]),
            at("2026-03-09T10:00:00Z"),
            at("2026-03-09T12:00:00Z"),
        ),
        now(),
    );
    assert_eq!(next_week.state, BookingState::Confirmed);
    // An admin is held to no quota.
    let big = create(
        &mut p,
        &admin(),
        book_at(named(&[0, 1, 2, 3]), today("18:00"), today("23:00")),
        now(),
    );
    assert_eq!(big.state, BookingState::Confirmed);
}

#[test]
fn over_quota_is_refused_when_the_policy_says_refuse() {
    let mut p = plan(quota_policy(OverPolicy::Refuse));
    create(
        &mut p,
        &user("bob"),
        book_at(named(&[0, 1]), today("10:00"), today("14:00")),
        now(),
    );
    let e = refused(
        &mut p,
        &user("bob"),
        book_at(named(&[2, 3]), today("15:00"), today("17:00")),
        now(),
    );
    assert!(
        matches!(
            e,
            PlanError::OverPolicy {
                rule: Rule::WeeklyQuota,
                ..
            }
        ),
        "{e:?}"
    );
    // Exactly at the quota is fine: 8 + 2 × 1 h = 10.
    create(
        &mut p,
        &user("bob"),
        book_at(named(&[2, 3]), today("15:00"), today("16:00")),
        now(),
    );
}

#[test]
fn each_limit_is_named_when_refused() {
    let policy = Policy {
        max_booking_secs: Some(4 * 3600),
        max_ahead_secs: Some(2 * 86_400),
        max_gpus_at_once: Some(2),
        over_policy: OverPolicy::Refuse,
        ..Policy::default()
    };
    let mut p = plan(policy);
    let bob = user("bob");
    let cases = [
        (
            book_at(named(&[0]), today("10:00"), today("15:00")),
            Rule::MaxBooking,
        ),
        (
            book_at(
                named(&[0]),
                at("2026-03-05T10:00:00Z"),
                at("2026-03-05T11:00:00Z"),
            ),
            Rule::MaxAhead,
        ),
        (
            book_at(named(&[0, 1, 2]), today("10:00"), today("11:00")),
            Rule::MaxGpusAtOnce,
        ),
        (book_asap(named(&[0]), Duration::hours(5)), Rule::MaxBooking),
    ];
    for (op, rule) in cases {
        match refused(&mut p, &bob, op, now()) {
            PlanError::OverPolicy { rule: r, .. } => assert_eq!(r, rule),
            e => panic!("expected OverPolicy({rule}), got {e:?}"),
        }
    }
    // Held at once counts what bob already holds at the same moments.
    create(
        &mut p,
        &bob,
        book_at(named(&[0, 1]), today("10:00"), today("11:00")),
        now(),
    );
    match refused(
        &mut p,
        &bob,
        book_at(named(&[2]), today("10:45"), today("11:30")),
        now(),
    ) {
        PlanError::OverPolicy { rule, .. } => assert_eq!(rule, Rule::MaxGpusAtOnce),
        e => panic!("expected OverPolicy, got {e:?}"),
    }
    create(
        &mut p,
        &bob,
        book_at(named(&[2]), today("11:00"), today("11:30")),
        now(),
    );
}

#[test]
fn extending_into_someone_elses_booking_is_a_conflict() {
    let mut p = plan(Policy::default());
    let bob = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("12:00")),
        now(),
    );
    let carol = create(
        &mut p,
        &user("carol"),
        book_at(named(&[0, 1]), today("12:00"), today("14:00")),
        now(),
    );
    let e = refused(
        &mut p,
        &user("bob"),
        Op::Extend {
            id: bob.id,
            end: today("13:00"),
        },
        now(),
    );
    assert_eq!(
        e,
        PlanError::Conflict(vec![Conflict {
            booking: carol.id,
            owner: "carol".into(),
            gpus: vec![uuid(0)],
            interval: span(today("12:00"), today("14:00")),
            title: "training".into(),
        }])
    );
    // The same once the slot has started.
    p.tick(today("10:00"));
    let e = refused(
        &mut p,
        &user("bob"),
        Op::Extend {
            id: bob.id,
            end: today("13:00"),
        },
        today("10:30"),
    );
    assert!(matches!(e, PlanError::Conflict(_)), "{e:?}");
    // An end that is not later is not an extension.
    let e = refused(
        &mut p,
        &user("bob"),
        Op::Extend {
            id: bob.id,
            end: today("11:00"),
        },
        today("10:30"),
    );
    assert_invalid(e);
}

/// An extension changes the end and nothing else. An "as soon as possible" booking starts
/// where the queue put it, which need not be on the policy's grid; extending it must not
/// move its start down to the grid (into the booking before it).
#[test]
fn extending_an_asap_booking_keeps_its_start() {
    let mut p = plan(Policy::default());
    let t = today("09:07:13");
    let carol = create(
        &mut p,
        &user("carol"),
        book_asap(named(&[0]), Duration::hours(1)),
        t,
    );
    assert_eq!(carol.interval, span(t, today("10:07:13")));
    let bob = create(
        &mut p,
        &user("bob"),
        book_asap(named(&[0]), Duration::hours(1)),
        t,
    );
    assert_eq!(bob.interval, span(today("10:07:13"), today("11:07:13")));
    let changes = p
        .apply(
            &user("bob"),
            Op::Extend {
                id: bob.id,
                end: today("12:00"),
            },
            t,
        )
        .expect("the hour after bob's booking is free");
    assert_eq!(changes[0].kind, ChangeKind::Changed);
    assert_eq!(
        changes[0].booking.interval,
        span(today("10:07:13"), today("12:00"))
    );
}

/// An extension that rounds to the current end (the grid is 15 minutes, 11:05 rounds to
/// 11:00) must not be reported as a change: it is refused, or it extends to a later slot.
#[test]
fn an_extension_that_rounds_to_the_same_end_does_not_pass_for_one() {
    let mut p = plan(Policy::default());
    let bob = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("11:00")),
        now(),
    );
    match p.apply(
        &user("bob"),
        Op::Extend {
            id: bob.id,
            end: today("11:05"),
        },
        now(),
    ) {
        Err(e) => assert_invalid(e),
        Ok(changes) => assert!(
            changes[0].booking.interval.end > today("11:00"),
            "extend to 11:05 answered {:?} but left the booking at {:?}",
            changes[0].kind,
            changes[0].booking.interval
        ),
    }
}

#[test]
fn named_gpus_are_kept_in_index_order() {
    let mut p = plan(Policy::default());
    let b = create(
        &mut p,
        &user("bob"),
        book_at(named(&[2, 0]), today("10:00"), today("11:00")),
        now(),
    );
    assert_eq!(
        b.gpus,
        vec![uuid(0), uuid(2)],
        "Booking::gpus is in index order"
    );
}

// ---------------------------------------------------------------------------------------------
// What people rely on

#[test]
fn cancel_frees_capacity_and_the_queue_moves_earlier_in_the_order_asked() {
    let mut p = plan(Policy::default());
    let all = GpuSelection::Count {
        count: 4,
        min_memory: None,
    };
    let bob = create(
        &mut p,
        &user("bob"),
        book_at(all, now(), today("14:00")),
        now(),
    );
    let two = GpuSelection::Count {
        count: 2,
        min_memory: None,
    };
    let carol = create(
        &mut p,
        &user("carol"),
        book_asap(two, Duration::hours(2)),
        now(),
    );
    assert_eq!(carol.interval, span(today("14:00"), today("16:00")));
    assert_eq!(carol.gpus, vec![uuid(0), uuid(1)]);
    let three = GpuSelection::Count {
        count: 3,
        min_memory: None,
    };
    let dave = create(
        &mut p,
        &user("dave"),
        book_asap(three, Duration::hours(1)),
        now(),
    );
    assert_eq!(dave.interval, span(today("16:00"), today("17:00")));

    let t = today("09:05");
    let changes = p
        .apply(&user("bob"), Op::Cancel { id: bob.id }, t)
        .expect("bob cancels his own booking");
    let kinds: Vec<(ChangeKind, BookingId)> =
        changes.iter().map(|c| (c.kind, c.booking.id)).collect();
    assert_eq!(
        kinds,
        vec![
            (ChangeKind::Cancelled, bob.id),
            (ChangeKind::MovedEarlier, carol.id),
            (ChangeKind::MovedEarlier, dave.id),
        ]
    );
    assert_eq!(changes[0].booking.state, BookingState::Cancelled);
    // carol asked first: she starts now on GPUs 0 and 1; dave needs three, so he waits for hers.
    assert_eq!(changes[1].booking.interval, span(t, today("11:05")));
    assert_eq!(changes[1].before, Some(carol.interval));
    assert_eq!(changes[1].booking.gpus, vec![uuid(0), uuid(1)]);
    assert_eq!(
        changes[2].booking.interval,
        span(today("11:05"), today("12:05"))
    );
    assert_eq!(changes[2].before, Some(dave.interval));
    assert_eq!(p.get(dave.id).unwrap().interval.start, today("11:05"));
}

/// The queue settles completely: when one waiting booking moves earlier, the slot it leaves
/// can let a booking asked before it move earlier too.
#[test]
fn the_queue_settles_when_a_later_request_moves_out_of_an_earlier_ones_way() {
    let mut p = plan(Policy::default());
    let big = |count| GpuSelection::Count {
        count,
        min_memory: Some(80 * GIB),
    };
    // carol holds GPU 0 until 11:00 and GPU 1 until 10:00.
    let a = create(
        &mut p,
        &user("carol"),
        book_at(named(&[0]), now(), today("11:00")),
        now(),
    );
    create(
        &mut p,
        &user("carol"),
        book_at(named(&[1]), now(), today("10:00")),
        now(),
    );
    // bob asks first for both 80 GiB GPUs for an hour: 11:00.
    let y = create(
        &mut p,
        &user("bob"),
        book_asap(big(2), Duration::hours(1)),
        now(),
    );
    assert_eq!(y.interval, span(today("11:00"), today("12:00")));
    // dave asks next for one of them: GPU 1 at 10:00.
    let x = create(
        &mut p,
        &user("dave"),
        book_asap(big(1), Duration::hours(1)),
        now(),
    );
    assert_eq!(x.interval, span(today("10:00"), today("11:00")));
    assert_eq!(x.gpus, vec![uuid(1)]);
    // carol gives GPU 0 back: dave moves to GPU 0 at 09:00, which frees GPU 1 from 10:00,
    // so both GPUs are free from 10:00 and bob, who asked first, must start then.
    let changes = p
        .apply(&user("carol"), Op::Cancel { id: a.id }, now())
        .expect("carol cancels");
    assert_eq!(p.get(x.id).unwrap().interval.start, now());
    assert_eq!(
        p.get(y.id).unwrap().interval,
        span(today("10:00"), today("11:00")),
        "bob's request waits while both GPUs are free; changes: {:?}",
        changes
            .iter()
            .map(|c| (c.kind, c.booking.id, c.booking.interval.start))
            .collect::<Vec<_>>()
    );
    assert!(changes
        .iter()
        .any(|c| c.kind == ChangeKind::MovedEarlier && c.booking.id == y.id));
}

/// The queue moves a booking earlier only within its owner's limits: a request that fitted
/// the weekly quota in the week it was placed must not be pulled into a week where it does
/// not.
#[test]
fn the_queue_does_not_pull_a_booking_over_its_owners_weekly_quota() {
    let mut p = plan(quota_policy(OverPolicy::Approval));
    // Sunday 2026-03-01 09:00; the quota week turns over at midnight.
    let sunday = |hhmm: &str| at(&format!("2026-03-01T{hhmm}:00Z"));
    let t = sunday("09:00");
    let monday = at("2026-03-02T00:00:00Z");
    // carol uses 4 of her 10 GPU-hours this week.
    create(
        &mut p,
        &user("carol"),
        book_at(named(&[0]), t, sunday("13:00")),
        t,
    );
    // alice holds everything else until Monday.
    let a = create(&mut p, &admin(), book_at(named(&[1, 2, 3]), t, monday), t);
    let b = create(
        &mut p,
        &admin(),
        book_at(named(&[0]), sunday("13:00"), monday),
        t,
    );
    // carol asks for all four GPUs for two hours: Monday 00:00, 8 GPU-hours of next week.
    let all = GpuSelection::Count {
        count: 4,
        min_memory: None,
    };
    let q = create(
        &mut p,
        &user("carol"),
        book_asap(all, Duration::hours(2)),
        t,
    );
    assert_eq!(q.state, BookingState::Confirmed);
    assert_eq!(q.interval.start, monday);
    // alice gives everything back.
    p.apply(&admin(), Op::Cancel { id: a.id }, t)
        .expect("alice cancels");
    p.apply(&admin(), Op::Cancel { id: b.id }, t)
        .expect("alice cancels");
    let week = span(at("2026-02-23T00:00:00Z"), monday);
    let used = p.gpu_seconds("carol", &week, None);
    assert!(
        used <= 10 * 3600,
        "the queue moved carol's request to {:?}: {:.1} GPU-hours in a week with a quota of 10",
        p.get(q.id).unwrap().interval,
        used as f64 / 3600.0
    );
}

#[test]
fn release_of_an_active_booking_ends_it_and_gives_the_rest_back() {
    let mut p = plan(Policy::default());
    let bob = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), now(), today("12:00")),
        now(),
    );
    let carol = create(
        &mut p,
        &user("carol"),
        book_asap(named(&[0]), Duration::hours(1)),
        now(),
    );
    assert_eq!(carol.interval.start, today("12:00"));
    // Not started: release is refused, cancel is the way.
    let e = refused(&mut p, &user("bob"), Op::Release { id: bob.id }, now());
    assert_invalid(e);
    p.tick(now());
    assert_eq!(p.get(bob.id).unwrap().state, BookingState::Active);
    // Started: cancel is refused, release is the way.
    let e = refused(
        &mut p,
        &user("bob"),
        Op::Cancel { id: bob.id },
        today("10:00"),
    );
    assert_invalid(e);
    let t = today("10:20:30");
    let changes = p
        .apply(&user("bob"), Op::Release { id: bob.id }, t)
        .expect("bob releases");
    assert_eq!(changes[0].kind, ChangeKind::Released);
    assert_eq!(changes[0].booking.state, BookingState::Ended);
    assert_eq!(changes[0].booking.interval, span(now(), t));
    assert_eq!(changes[0].before, Some(span(now(), today("12:00"))));
    assert_eq!(changes[1].kind, ChangeKind::MovedEarlier);
    assert_eq!(changes[1].booking.id, carol.id);
    assert_eq!(changes[1].booking.interval, span(t, today("11:20:30")));
    // What bob used counts for his quota, what he gave back does not.
    let week = span(at("2026-03-02T00:00:00Z"), at("2026-03-09T00:00:00Z"));
    assert_eq!(p.gpu_seconds("bob", &week, None), 80 * 60 + 30);
    // Released twice is refused.
    let e = refused(&mut p, &user("bob"), Op::Release { id: bob.id }, t);
    assert_invalid(e);
}

/// A release that arrives after the slot's end but before the timer ended it (the agent
/// was busy or restarting) must not lengthen the booking: the GPUs were someone else's
/// from the end on.
#[test]
fn a_late_release_never_lengthens_a_booking() {
    let mut p = plan(Policy::default());
    let bob = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), now(), today("10:00")),
        now(),
    );
    create(
        &mut p,
        &user("carol"),
        book_at(named(&[0]), today("10:00"), today("11:00")),
        now(),
    );
    p.tick(now());
    let changes = p
        .apply(&user("bob"), Op::Release { id: bob.id }, today("10:30"))
        .expect("bob's booking is still active");
    let ended = &changes[0].booking;
    assert!(
        ended.interval.end <= today("10:00"),
        "the release moved the end from 10:00 to {}",
        ended.interval.end
    );
    let week = span(at("2026-03-02T00:00:00Z"), at("2026-03-09T00:00:00Z"));
    assert_eq!(p.gpu_seconds("bob", &week, None), 3600);
}

fn approval_policy() -> Policy {
    Policy {
        max_booking_secs: Some(2 * 3600),
        over_policy: OverPolicy::Approval,
        ..Policy::default()
    }
}

#[test]
fn an_admin_approves_and_denies_and_nobody_else_can() {
    let mut p = plan(approval_policy());
    let long = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("14:00")),
        now(),
    );
    assert_eq!(long.state, BookingState::PendingApproval);
    let other = create(
        &mut p,
        &user("bob"),
        book_at(named(&[1]), today("10:00"), today("14:00")),
        now(),
    );
    for who in [user("bob"), user("carol")] {
        let e = refused(
            &mut p,
            &who,
            Op::Approve {
                id: long.id,
                rev: None,
            },
            now(),
        );
        assert_not_allowed(e);
        let e = refused(
            &mut p,
            &who,
            Op::Deny {
                id: long.id,
                reason: None,
                rev: None,
            },
            now(),
        );
        assert_not_allowed(e);
    }
    assert_not_allowed(refused(
        &mut p,
        &guest(),
        Op::Approve {
            id: long.id,
            rev: None,
        },
        now(),
    ));

    let changes = p
        .apply(
            &admin(),
            Op::Approve {
                id: long.id,
                rev: None,
            },
            now(),
        )
        .expect("alice approves");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, ChangeKind::Approved);
    assert_eq!(changes[0].booking.state, BookingState::Confirmed);
    assert_eq!(changes[0].booking.pending_reason, None);
    assert_eq!(changes[0].booking.interval, long.interval);
    // Approved once is not waiting any more.
    assert_invalid(refused(
        &mut p,
        &admin(),
        Op::Approve {
            id: long.id,
            rev: None,
        },
        now(),
    ));
    assert_invalid(refused(
        &mut p,
        &admin(),
        Op::Deny {
            id: long.id,
            reason: None,
            rev: None,
        },
        now(),
    ));

    let changes = p
        .apply(
            &admin(),
            Op::Deny {
                id: other.id,
                reason: Some("use two shorter slots".into()),
                rev: None,
            },
            now(),
        )
        .expect("alice denies");
    assert_eq!(changes[0].kind, ChangeKind::Denied);
    assert_eq!(changes[0].booking.state, BookingState::Denied);
    assert_eq!(
        changes[0].booking.pending_reason.as_deref(),
        Some("use two shorter slots")
    );
    assert_invalid(refused(
        &mut p,
        &admin(),
        Op::Approve {
            id: other.id,
            rev: None,
        },
        now(),
    ));
}

#[test]
fn approving_into_a_taken_slot_is_a_conflict() {
    let mut p = plan(approval_policy());
    let long = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("14:00")),
        now(),
    );
    // While bob waits, carol books GPU 0 at noon (a waiting booking holds nothing).
    let carol = create(
        &mut p,
        &user("carol"),
        book_at(named(&[0]), today("12:00"), today("13:00")),
        now(),
    );
    let e = refused(
        &mut p,
        &admin(),
        Op::Approve {
            id: long.id,
            rev: None,
        },
        now(),
    );
    let PlanError::Conflict(c) = e else {
        panic!("expected Conflict, got {e:?}")
    };
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].booking, carol.id);
}

#[test]
fn an_approved_asap_request_is_placed_at_the_earliest_free_time() {
    let mut p = plan(approval_policy());
    create(
        &mut p,
        &user("carol"),
        book_at(named(&[0]), now(), today("10:00")),
        now(),
    );
    let long = create(
        &mut p,
        &user("bob"),
        book_asap(named(&[0]), Duration::hours(3)),
        now(),
    );
    assert_eq!(long.state, BookingState::PendingApproval);
    let changes = p
        .apply(
            &admin(),
            Op::Approve {
                id: long.id,
                rev: None,
            },
            today("09:30"),
        )
        .expect("alice approves");
    assert_eq!(
        changes[0].booking.interval,
        span(today("10:00"), today("13:00"))
    );
    assert_eq!(changes[0].booking.state, BookingState::Confirmed);
}

#[test]
fn the_slot_timer_announces_starts_and_ends_on_time() {
    let mut p = plan(Policy::default());
    assert_eq!(p.next_due(), None);
    let b = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0, 2]), today("10:00"), today("11:00")),
        now(),
    );
    let warn_start = today("10:00") - START_WARNING;
    assert_eq!(warn_start, today("09:55"));
    assert_eq!(p.next_due(), Some(warn_start));
    assert!(p.tick(warn_start - Duration::seconds(1)).is_empty());

    let kinds = |c: &[gpubook_core::Change]| c.iter().map(|c| c.kind).collect::<Vec<_>>();
    let c = p.tick(warn_start);
    assert_eq!(kinds(&c), vec![ChangeKind::SlotStarting]);
    assert_eq!(c[0].booking.id, b.id);
    assert!(c[0].booking.warned_start);
    assert_eq!(c[0].booking.state, BookingState::Confirmed);
    assert!(p.tick(warn_start).is_empty(), "announced once");
    assert_eq!(p.next_due(), Some(today("10:00")));

    let c = p.tick(today("10:00"));
    assert_eq!(kinds(&c), vec![ChangeKind::Started]);
    assert_eq!(c[0].booking.state, BookingState::Active);
    let warn_end = today("11:00") - END_WARNING;
    assert_eq!(warn_end, today("10:50"));
    assert_eq!(p.next_due(), Some(warn_end));
    assert!(p.tick(warn_end - Duration::seconds(1)).is_empty());

    let c = p.tick(warn_end);
    assert_eq!(kinds(&c), vec![ChangeKind::SlotEnding]);
    assert!(c[0].booking.warned_end);
    assert_eq!(p.next_due(), Some(today("11:00")));

    let c = p.tick(today("11:00"));
    assert_eq!(kinds(&c), vec![ChangeKind::Ended]);
    assert_eq!(c[0].booking.state, BookingState::Ended);
    assert_eq!(p.next_due(), None);
    assert!(p.tick(today("12:00")).is_empty());
}

#[test]
fn a_late_timer_catches_up_in_one_tick() {
    let mut p = plan(Policy::default());
    let b = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("11:00")),
        now(),
    );
    // Woken inside the start warning and after the start: only Started is still news.
    let c = p.tick(today("10:05"));
    assert_eq!(
        c.iter().map(|c| c.kind).collect::<Vec<_>>(),
        vec![ChangeKind::Started]
    );
    // Woken after the end: it ends, without a stale "ends in 10 minutes".
    let c = p.tick(today("11:30"));
    assert_eq!(
        c.iter().map(|c| c.kind).collect::<Vec<_>>(),
        vec![ChangeKind::Ended]
    );
    assert_eq!(p.get(b.id).unwrap().state, BookingState::Ended);
}

#[test]
fn a_request_waiting_past_its_time_is_denied_by_the_timer() {
    let mut p = plan(approval_policy());
    let long = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("14:00")),
        now(),
    );
    assert_eq!(long.state, BookingState::PendingApproval);
    assert_eq!(p.next_due(), Some(today("14:00")));
    assert!(p.tick(today("13:59:59")).is_empty());
    let c = p.tick(today("14:00"));
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].kind, ChangeKind::Denied);
    assert_eq!(c[0].booking.state, BookingState::Denied);
    assert_eq!(p.next_due(), None);
}

#[test]
fn the_end_warning_follows_the_policy() {
    let policy = Policy::from_toml("end_warning = \"30m\"").unwrap();
    assert_eq!(Policy::default().end_warning(), END_WARNING);
    let mut p = plan(policy);
    create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("12:00")),
        now(),
    );
    p.tick(today("10:00"));
    assert_eq!(p.next_due(), Some(today("11:30")));
    assert!(p.tick(today("11:29")).is_empty());
    let c = p.tick(today("11:30"));
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].kind, ChangeKind::SlotEnding);
}
// ---------------------------------------------------------------------------------------------
// Approvals name the revision the admin saw

fn approve(p: &mut Plan, id: BookingId) {
    p.apply(&admin(), Op::Approve { id, rev: None }, now())
        .expect("alice approves");
}

fn move_to(id: BookingId, start: DateTime<Utc>, end: DateTime<Utc>, gpus: &[usize]) -> Op {
    Op::Move {
        id,
        interval: span(start, end),
        gpus: Some(gpus.iter().map(|i| uuid(*i)).collect()),
    }
}

/// Bob asks for 2 GPUs for 4 hours; the admin looks at it (revision 1); bob moves it to 4
/// GPUs. The admin's approval of revision 1 must not grant the 4-GPU request: it is refused
/// as Changed, saying what the request asks for now. So is a denial of revision 1.
#[test]
fn an_approval_of_a_revision_the_request_no_longer_has_is_refused_as_changed() {
    let mut p = plan(approval_policy());
    let asked = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0, 1]), today("10:00"), today("14:00")),
        now(),
    );
    assert_eq!(asked.state, BookingState::PendingApproval);
    assert_eq!(asked.revision, 1);
    assert_eq!(asked.pending_since, Some(1));
    p.apply(
        &user("bob"),
        move_to(asked.id, today("10:00"), today("14:00"), &[0, 1, 2, 3]),
        now(),
    )
    .expect("bob moves his request to 4 GPUs");
    let e = refused(
        &mut p,
        &admin(),
        Op::Approve {
            id: asked.id,
            rev: Some(1),
        },
        now(),
    );
    let PlanError::Changed {
        id,
        revision,
        ref shape,
    } = e
    else {
        panic!("expected Changed, got {e:?}")
    };
    assert_eq!((id, revision), (asked.id, 2));
    for part in [
        "4 GPUs",
        "GPU-0, GPU-1, GPU-2, GPU-3",
        "2026-03-02 10:00",
        "2026-03-02 14:00 UTC",
        "pending_approval",
    ] {
        assert!(shape.contains(part), "{shape:?} lacks {part:?}");
    }
    assert!(
        e.to_string()
            .starts_with(&format!("booking {} changed since you looked: ", asked.id)),
        "{e}"
    );
    let e = refused(
        &mut p,
        &admin(),
        Op::Deny {
            id: asked.id,
            reason: None,
            rev: Some(1),
        },
        now(),
    );
    assert!(matches!(e, PlanError::Changed { revision: 2, .. }), "{e:?}");
    // Looking again, the admin approves what it is now.
    let changes = p
        .apply(
            &admin(),
            Op::Approve {
                id: asked.id,
                rev: Some(2),
            },
            now(),
        )
        .expect("alice approves revision 2");
    assert_eq!(changes[0].booking.gpus.len(), 4);
    assert_eq!(changes[0].booking.state, BookingState::Confirmed);
}

/// An older client names no revision: its approval is taken only while the request is as it
/// was when it began to wait.
#[test]
fn an_approval_naming_no_revision_is_taken_only_while_the_request_is_unchanged() {
    let mut p = plan(approval_policy());
    let same = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("14:00")),
        now(),
    );
    let moved = create(
        &mut p,
        &user("bob"),
        book_at(named(&[1]), today("10:00"), today("14:00")),
        now(),
    );
    p.apply(
        &user("bob"),
        move_to(moved.id, today("10:00"), today("15:00"), &[1, 2]),
        now(),
    )
    .expect("bob moves one request");
    approve(&mut p, same.id);
    for op in [
        Op::Approve {
            id: moved.id,
            rev: None,
        },
        Op::Deny {
            id: moved.id,
            reason: None,
            rev: None,
        },
    ] {
        let e = refused(&mut p, &admin(), op, now());
        assert!(matches!(e, PlanError::Changed { revision: 2, .. }), "{e:?}");
    }
    // A revision that is not the booking's is Changed even when it is no longer waiting.
    let e = refused(
        &mut p,
        &admin(),
        Op::Approve {
            id: same.id,
            rev: Some(1),
        },
        now(),
    );
    assert!(
        matches!(&e, PlanError::Changed { shape, .. } if shape.contains("confirmed")),
        "{e:?}"
    );
}

/// A waiting request stored by an older agent has no `pending_since`; it loads, and it began
/// to wait when it was made (revision 1).
#[test]
fn a_waiting_request_stored_by_an_older_agent_is_decided_as_it_began_to_wait() {
    let mut src = plan(approval_policy());
    let stored = create(
        &mut src,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("14:00")),
        now(),
    );
    let mut json = serde_json::to_value(&stored).unwrap();
    json.as_object_mut().unwrap().remove("pending_since");
    let old: Booking = serde_json::from_value(json).expect("an older agent's booking loads");
    assert_eq!(old.pending_since, None);
    let mut changed = old.clone();
    changed.id = BookingId(old.id.0 + 1);
    changed.revision = 3;
    let mut p = Plan::new(
        server(),
        approval_policy(),
        vec![old.clone(), changed.clone()],
    );
    let e = refused(
        &mut p,
        &admin(),
        Op::Approve {
            id: changed.id,
            rev: None,
        },
        now(),
    );
    assert!(matches!(e, PlanError::Changed { revision: 3, .. }), "{e:?}");
    approve(&mut p, old.id);
}

// ---------------------------------------------------------------------------------------------
// The policy's bounds on a job, and on requests waiting

fn job(command: &str) -> JobSpec {
    JobSpec {
        command: command.into(),
        cwd: None,
        env: BTreeMap::new(),
        end_signal: None,
        grace_secs: None,
        keep_slot: false,
        ..Default::default()
    }
}

fn book_job(gpu: usize, job: JobSpec) -> Op {
    Op::Book {
        gpus: named(&[gpu]),
        when: When::At(span(today("10:00"), today("11:00"))),
        title: "training".into(),
        job: Some(job),
    }
}

/// A grace period runs on the next booking's GPUs, so `max_grace` holds for admins too.
#[test]
fn a_grace_period_beyond_max_grace_is_invalid_for_everyone() {
    let policy = Policy {
        max_grace_secs: 120,
        ..Policy::default()
    };
    assert_eq!(policy.max_grace(), Duration::minutes(2));
    let mut p = plan(policy);
    for who in [user("bob"), admin()] {
        let e = refused(
            &mut p,
            &who,
            book_job(
                0,
                JobSpec {
                    grace_secs: Some(121),
                    ..job("python train.py")
                },
            ),
            now(),
        );
        assert!(e.to_string().contains("max_grace of 2m"), "{e}");
        assert_invalid(e);
    }
    create(
        &mut p,
        &user("bob"),
        book_job(
            0,
            JobSpec {
                grace_secs: Some(120),
                ..job("python train.py")
            },
        ),
        now(),
    );
}

/// A user with `max_pending` requests waiting is refused the next one that would wait,
/// naming the limit; it is not queued. One within the policy is still booked, and an admin
/// is not held to it.
#[test]
fn a_request_beyond_max_pending_is_refused_not_queued() {
    let policy = Policy {
        max_pending: 2,
        ..approval_policy()
    };
    assert_eq!(policy.max_pending(), 2);
    let mut p = plan(policy);
    let long = |gpu| book_at(named(&[gpu]), today("10:00"), today("14:00"));
    let first = create(&mut p, &user("bob"), long(0), now());
    create(&mut p, &user("bob"), long(1), now());
    assert_eq!(p.waiting("bob"), 2);
    let e = refused(&mut p, &user("bob"), long(2), now());
    assert!(e.to_string().contains("max_pending"), "{e}");
    assert!(e.to_string().contains("2 requests waiting"), "{e}");
    assert_not_allowed(e);
    // Others are not held to bob's count; bob may still book within the policy.
    create(&mut p, &user("carol"), long(2), now());
    create(
        &mut p,
        &user("bob"),
        book_at(named(&[3]), today("10:00"), today("11:00")),
        now(),
    );
    // A decision frees a place.
    approve(&mut p, first.id);
    assert_eq!(p.waiting("bob"), 1);
    let third = create(
        &mut p,
        &user("bob"),
        book_at(named(&[3]), today("15:00"), today("19:00")),
        now(),
    );
    assert_eq!(third.state, BookingState::PendingApproval);
    // An admin's request never waits.
    create(
        &mut p,
        &admin(),
        book_at(named(&[2]), today("15:00"), today("19:00")),
        now(),
    );
}

/// The agent sets CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER and the GPUBOOK_ variables: a job
/// that sets one is refused, naming it.
#[test]
fn a_job_may_not_set_the_variables_the_agent_sets() {
    let mut p = plan(Policy::default());
    for name in [
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "GPUBOOK_BOOKING",
        "GPUBOOK_",
    ] {
        let mut j = job("python train.py");
        j.env.insert(name.into(), "0".into());
        let e = refused(&mut p, &admin(), book_job(0, j), now());
        assert!(e.to_string().contains(name), "{e}");
        assert_invalid(e);
    }
    // Names that only look alike are the job's.
    let mut j = job("python train.py");
    for name in [
        "CUDA_VISIBLE_DEVICES_X",
        "cuda_visible_devices",
        "MY_GPUBOOK_X",
        "HOME",
    ] {
        j.env.insert(name.into(), "x".into());
    }
    create(&mut p, &user("bob"), book_job(0, j), now());
}

/// NUL characters cannot pass to exec; '=' cannot be in a name; a working directory is a
/// path on the server, so a relative one is the client's to resolve.
#[test]
fn a_job_with_a_nul_a_bad_name_or_a_relative_working_directory_is_invalid() {
    let mut p = plan(Policy::default());
    let with_env = |k: &str, v: &str| {
        let mut j = job("python train.py");
        j.env.insert(k.into(), v.into());
        j
    };
    let cwd = |c: &str| JobSpec {
        cwd: Some(c.into()),
        ..job("python train.py")
    };
    let cases = [
        (job("python\0 train.py"), "command contains a NUL"),
        (with_env("", "x"), "empty name"),
        (with_env("A=B", "x"), "\"A=B\""),
        (with_env("A\0B", "x"), "NUL"),
        (
            with_env("DATA", "x\0y"),
            "\"DATA\" has a NUL character in its value",
        ),
        (
            cwd("runs/today"),
            "the working directory must be an absolute path on the server; the client \
             resolves a relative one",
        ),
        (cwd(""), "absolute path"),
        (cwd("~/runs"), "absolute path"),
        (cwd("/home/bob/\0runs"), "working directory contains a NUL"),
    ];
    for (j, says) in cases {
        let e = refused(&mut p, &user("bob"), book_job(0, j), now());
        assert!(e.to_string().contains(says), "{e} does not say {says:?}");
        assert_invalid(e);
    }
    create(
        &mut p,
        &user("bob"),
        book_job(0, cwd("/home/bob/runs")),
        now(),
    );
}

/// A booking's title and job are bounded so it always fits a listing page: one over
/// `MAX_BOOKING_BYTES` (in JSON) is refused with its size; one just within is booked.
#[test]
fn a_booking_too_large_for_a_listing_page_is_refused_with_its_size() {
    let mut p = plan(Policy::default());
    // 20 variables of 4000 bytes: each within the per-variable bound, 80 kB together.
    let mut big = job("python train.py");
    for i in 0..20 {
        big.env.insert(format!("V{i:02}"), "x".repeat(4000));
    }
    let e = refused(&mut p, &user("bob"), book_job(0, big.clone()), now());
    assert!(
        e.to_string().contains(&MAX_BOOKING_BYTES.to_string()),
        "{e}"
    );
    assert!(e.to_string().contains("environment"), "{e}");
    assert_invalid(e);
    // Escapes count: 12 variables of 1000 control characters are 72 kB in JSON.
    let mut escaped = job("python train.py");
    for i in 0..12 {
        escaped.env.insert(format!("V{i:02}"), "\u{1}".repeat(1000));
    }
    assert!(serde_json::to_vec(&escaped).unwrap().len() > MAX_BOOKING_BYTES);
    assert_invalid(refused(&mut p, &user("bob"), book_job(0, escaped), now()));
    big.env.retain(|k, _| k.as_str() < "V15");
    let b = create(&mut p, &user("bob"), book_job(0, big), now());
    let listed =
        serde_json::to_vec(&b.job).unwrap().len() + serde_json::to_vec(&b.title).unwrap().len();
    assert!(listed <= MAX_BOOKING_BYTES, "{listed}");
}
// ---------------------------------------------------------------------------------------------
// Decisions on a change: a waiting request judged afresh, limits counting what a change adds,
// a booking for now

/// A request waiting for approval that its owner moves back within the policy is judged
/// again: it is confirmed (and holds its GPUs), not left waiting for a reason that no longer
/// holds.
#[test]
fn a_waiting_request_moved_back_within_the_policy_is_confirmed() {
    let mut p = plan(approval_policy());
    let long = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("14:00")),
        now(),
    );
    assert_eq!(long.state, BookingState::PendingApproval);
    let changes = p
        .apply(
            &user("bob"),
            Op::Move {
                id: long.id,
                interval: span(today("10:00"), today("12:00")),
                gpus: None,
            },
            now(),
        )
        .expect("bob shortens his request");
    assert_eq!(changes[0].kind, ChangeKind::Changed);
    let b = &changes[0].booking;
    assert_eq!(b.state, BookingState::Confirmed);
    assert_eq!(b.pending_reason, None);
    assert_eq!(p.get(long.id), Some(b));
    // It holds GPU 0 now.
    let e = refused(
        &mut p,
        &user("carol"),
        book_at(named(&[0]), today("11:00"), today("12:00")),
        now(),
    );
    assert!(matches!(e, PlanError::Conflict(_)), "{e:?}");
}

/// A waiting request moved to another shape that is still beyond the policy keeps waiting,
/// with the reason that holds for the new shape.
#[test]
fn a_waiting_request_moved_still_beyond_the_policy_waits_for_the_reason_that_holds_now() {
    let policy = Policy {
        max_gpus_at_once: Some(2),
        ..approval_policy()
    };
    let mut p = plan(policy);
    let long = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("14:00")),
        now(),
    );
    assert!(long
        .pending_reason
        .as_deref()
        .unwrap()
        .contains("at most 2h"));
    let changes = p
        .apply(
            &user("bob"),
            Op::Move {
                id: long.id,
                interval: span(today("10:00"), today("11:00")),
                gpus: Some(vec![uuid(0), uuid(1), uuid(2)]),
            },
            now(),
        )
        .expect("bob reshapes his request");
    let b = &changes[0].booking;
    assert_eq!(b.state, BookingState::PendingApproval);
    let reason = b.pending_reason.as_deref().expect("a reason");
    assert!(reason.contains("3 GPUs at once"), "{reason}");
    assert!(!reason.contains("at most 2h"), "{reason}");
}

/// A waiting request moved within the policy onto GPUs someone holds then is refused as a
/// conflict, like a new booking there would be; it keeps waiting where it was.
#[test]
fn a_waiting_request_moved_within_the_policy_onto_a_taken_slot_is_a_conflict() {
    let mut p = plan(approval_policy());
    let carol = create(
        &mut p,
        &user("carol"),
        book_at(named(&[0]), today("10:00"), today("11:00")),
        now(),
    );
    let long = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("12:00"), today("16:00")),
        now(),
    );
    assert_eq!(long.state, BookingState::PendingApproval);
    let e = refused(
        &mut p,
        &user("bob"),
        Op::Move {
            id: long.id,
            interval: span(today("10:00"), today("11:00")),
            gpus: None,
        },
        now(),
    );
    let PlanError::Conflict(c) = e else {
        panic!("expected Conflict, got {e:?}")
    };
    assert_eq!(c[0].booking, carol.id);
}

/// An admin approved bob 3 GPUs at 10:00–10:30 beside the 1 GPU he holds 09:00–10:30: 4 at
/// once, beyond the limit of 3. Extending the 1-GPU booking to 11:30 adds only 10:30–11:30,
/// where he holds nothing else: it is within the limit. Extending the 3-GPU one does add GPUs
/// at once beyond it.
#[test]
fn an_extension_is_held_only_to_the_gpus_it_adds_at_once() {
    let policy = Policy {
        max_gpus_at_once: Some(3),
        over_policy: OverPolicy::Approval,
        ..Policy::default()
    };
    let mut p = plan(policy);
    let small = create(
        &mut p,
        &user("bob"),
        book_at(named(&[3]), today("09:00"), today("10:30")),
        now(),
    );
    assert_eq!(small.state, BookingState::Confirmed);
    let big = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0, 1, 2]), today("10:00"), today("10:30")),
        now(),
    );
    assert_eq!(big.state, BookingState::PendingApproval);
    approve(&mut p, big.id);
    let changes = p
        .apply(
            &user("bob"),
            Op::Extend {
                id: small.id,
                end: today("11:30"),
            },
            now(),
        )
        .expect("the extension adds one GPU where bob holds no other");
    assert_eq!(changes[0].booking.interval.end, today("11:30"));
    assert_eq!(changes[0].booking.state, BookingState::Confirmed);
    // 10:30–11:00 is new for the big one, and bob holds 1 + 3 GPUs then.
    let e = refused(
        &mut p,
        &user("bob"),
        Op::Extend {
            id: big.id,
            end: today("11:00"),
        },
        now(),
    );
    assert!(
        matches!(
            e,
            PlanError::OverPolicy {
                rule: Rule::MaxGpusAtOnce,
                ..
            }
        ),
        "{e:?}"
    );
}

/// Bob is over his weekly quota of 10 GPU-hours this week (an admin approved it). Extending
/// his Sunday-night booking past midnight adds GPU-hours only to next week, which is within
/// the quota: it is taken. Moving its start earlier adds to this week: refused.
#[test]
fn an_extension_is_held_only_to_the_gpu_hours_it_adds_to_a_week() {
    let mut p = plan(quota_policy(OverPolicy::Approval));
    create(
        &mut p,
        &user("bob"),
        book_at(named(&[0, 1]), today("10:00"), today("14:00")),
        now(),
    );
    // 8 + 2 = 10 GPU-hours: exactly the quota.
    let sunday = create(
        &mut p,
        &user("bob"),
        book_at(
            named(&[0]),
            at("2026-03-08T22:00:00Z"),
            at("2026-03-09T00:00:00Z"),
        ),
        now(),
    );
    assert_eq!(sunday.state, BookingState::Confirmed);
    let over = create(
        &mut p,
        &user("bob"),
        book_at(named(&[2, 3]), today("15:00"), today("17:00")),
        now(),
    );
    assert_eq!(over.state, BookingState::PendingApproval);
    approve(&mut p, over.id);
    let changes = p
        .apply(
            &user("bob"),
            Op::Extend {
                id: sunday.id,
                end: at("2026-03-09T02:00:00Z"),
            },
            now(),
        )
        .expect("the extension adds GPU-hours to next week only");
    assert_eq!(changes[0].booking.state, BookingState::Confirmed);
    let e = refused(
        &mut p,
        &user("bob"),
        Op::Move {
            id: sunday.id,
            interval: span(at("2026-03-08T21:00:00Z"), at("2026-03-09T02:00:00Z")),
            gpus: None,
        },
        now(),
    );
    assert!(
        matches!(
            e,
            PlanError::OverPolicy {
                rule: Rule::WeeklyQuota,
                ..
            }
        ),
        "{e:?}"
    );
}

/// `--start now` at 16:23 on a 15-minute grid books from 16:23 (to the second), not from
/// 16:30; only the end lands on the grid. A start up to a minute ahead (a client's clock
/// behind the server's) is now too; two minutes ahead snaps to the grid.
#[test]
fn a_booking_for_now_starts_now_and_only_its_end_is_on_the_grid() {
    let mut p = plan(Policy::default());
    let bob = user("bob");
    let t = today("16:23");
    let b = create(&mut p, &bob, book_at(named(&[0]), t, today("17:00")), t);
    assert_eq!(b.interval, span(t, today("17:00")));
    let b = create(
        &mut p,
        &bob,
        book_at(named(&[1]), today("16:23:45"), today("17:10")),
        t,
    );
    assert_eq!(b.interval, span(t, today("17:15")));
    // Asked at 16:23, arriving 20.5 s later: it starts when it arrives, in whole seconds.
    let arrived = t + Duration::milliseconds(20_500);
    let b = create(
        &mut p,
        &bob,
        book_at(named(&[2]), t, today("16:24")),
        arrived,
    );
    assert_eq!(b.interval, span(today("16:23:20"), today("16:30")));
    let b = create(
        &mut p,
        &bob,
        book_at(named(&[3]), today("16:25"), today("17:00")),
        t,
    );
    assert_eq!(b.interval, span(today("16:30"), today("17:00")));
}

/// A start on the grid is not "now", even a few seconds ahead: a booking about to start
/// whose end is moved keeps its start (and does not run into the booking before it).
#[test]
fn a_booking_about_to_start_keeps_its_start_on_the_grid_when_moved() {
    let mut p = plan(Policy::default());
    create(
        &mut p,
        &user("carol"),
        book_at(named(&[0]), today("16:00"), today("16:30")),
        today("16:00"),
    );
    let bob = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("16:30"), today("17:00")),
        today("16:00"),
    );
    let changes = p
        .apply(
            &user("bob"),
            Op::Move {
                id: bob.id,
                interval: span(today("16:30"), today("17:30")),
                gpus: None,
            },
            today("16:29:30"),
        )
        .expect("bob moves his end");
    assert_eq!(
        changes[0].booking.interval,
        span(today("16:30"), today("17:30"))
    );
}

// ---------------------------------------------------------------------------------------------
// Times at the edges of what a clock can say

/// Far times and huge durations are refused as invalid; nothing panics, nothing changes.
#[test]
fn far_times_and_huge_durations_are_invalid_not_a_panic() {
    let max = DateTime::<Utc>::MAX_UTC;
    let min = DateTime::<Utc>::MIN_UTC;
    let y9999 = at("9999-12-31T00:00:00Z");
    let mut p = plan(Policy::default());
    let b = create(
        &mut p,
        &admin(),
        book_at(named(&[0]), today("10:00"), today("11:00")),
        now(),
    );
    let ops = [
        book_at(named(&[1]), y9999, y9999 + Duration::hours(1)),
        book_at(named(&[1]), today("10:00"), max),
        book_at(named(&[1]), max - Duration::hours(1), max),
        book_at(named(&[1]), min, max),
        book_asap(named(&[1]), Duration::MAX),
        book_asap(named(&[1]), Duration::days(365 * 100)),
        Op::Extend { id: b.id, end: max },
        Op::Extend {
            id: b.id,
            end: y9999,
        },
        Op::Move {
            id: b.id,
            interval: span(min, max),
            gpus: None,
        },
        Op::Move {
            id: b.id,
            interval: span(y9999, max),
            gpus: None,
        },
    ];
    for op in ops {
        assert_invalid(refused(&mut p, &admin(), op, now()));
    }
    // A clock at the end of time books nothing, and the timer copes.
    assert_invalid(refused(
        &mut p,
        &admin(),
        book_at(named(&[1]), max - Duration::hours(1), max),
        max,
    ));
    assert_invalid(refused(
        &mut p,
        &admin(),
        book_asap(named(&[1]), Duration::hours(1)),
        max,
    ));
    p.tick(min);
    p.next_due();
    p.tick(max);
    assert_eq!(p.next_due(), None);
}

/// Bookings stored at the edges of time (by a bug, or by hand) do not stop the slot timer.
#[test]
fn bookings_stored_at_the_edges_of_time_do_not_stop_the_timer() {
    // The last whole second: the plan works in seconds.
    let max = DateTime::from_timestamp(DateTime::<Utc>::MAX_UTC.timestamp(), 0).unwrap();
    let min = DateTime::<Utc>::MIN_UTC;
    let mut src = plan(Policy::default());
    let mut first = create(
        &mut src,
        &admin(),
        book_at(named(&[0]), today("10:00"), today("11:00")),
        now(),
    );
    let mut last = create(
        &mut src,
        &admin(),
        book_asap(named(&[1]), Duration::hours(1)),
        now(),
    );
    first.interval = span(min, min + Duration::hours(1));
    last.interval = span(max - Duration::minutes(1), max);
    last.asap.as_mut().unwrap().duration_secs = i64::MAX;
    let policy = Policy {
        end_warning_secs: i64::MAX,
        ..Policy::default()
    };
    let mut p = Plan::new(server(), policy, vec![first.clone(), last.clone()]);
    assert_eq!(p.next_due(), Some(min));
    p.tick(now());
    p.next_due();
    p.tick(max);
    assert_eq!(p.next_due(), None);
    // The queue looks at a booking whose stored request is longer than time.
    let mut p = Plan::new(server(), Policy::default(), vec![first, last]);
    p.apply(&admin(), book_asap(named(&[1]), Duration::hours(1)), now())
        .expect("the queue still places a request");
}

/// Found by `extreme_times_and_durations_never_panic_and_a_refusal_changes_nothing`: asking
/// how many GPU-seconds someone holds in a window given backwards panicked (a backwards range
/// over the owner's bookings). It holds none.
#[test]
fn gpu_seconds_in_a_window_given_backwards_are_none_not_a_panic() {
    let mut p = plan(Policy::default());
    create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("11:00")),
        now(),
    );
    assert_eq!(
        p.gpu_seconds("bob", &span(today("12:00"), today("09:00")), None),
        0
    );
    assert_eq!(
        p.gpu_seconds("bob", &span(today("09:00"), today("12:00")), None),
        3600
    );
}

#[test]
fn a_user_holds_at_most_max_upcoming_bookings_so_no_one_fills_the_store() {
    let policy = Policy {
        max_upcoming: 3,
        ..Policy::default()
    };
    assert_eq!(policy.max_upcoming(), 3);
    let mut p = plan(policy);
    let hour = |h: u32| {
        let start = format!("{h:02}:00");
        let end = format!("{:02}:00", h + 1);
        book_at(named(&[0]), today(&start), today(&end))
    };
    let first = create(&mut p, &user("bob"), hour(10), now());
    create(&mut p, &user("bob"), hour(11), now());
    create(&mut p, &user("bob"), hour(12), now());
    assert_eq!(p.upcoming("bob"), 3);
    let e = refused(&mut p, &user("bob"), hour(13), now());
    assert!(e.to_string().contains("max_upcoming"), "{e}");
    assert_not_allowed(e);
    // Others are not held to bob's count, nor admins to any.
    create(&mut p, &user("carol"), hour(14), now());
    create(&mut p, &admin(), hour(15), now());
    // A cancel frees a place.
    p.apply(&user("bob"), Op::Cancel { id: first.id }, now())
        .expect("bob cancels his own");
    assert_eq!(p.upcoming("bob"), 2);
    create(&mut p, &user("bob"), hour(16), now());
}

#[test]
fn a_slot_too_short_for_its_end_warning_has_its_end_announced_with_its_start() {
    // The default warning is 10 minutes: a 15-minute slot would be warned 5 minutes in, just
    // after "started, yours until 10:15" said the same. It is marked warned as it starts.
    let mut p = plan(Policy::default());
    let b = create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("10:15")),
        now(),
    );
    p.tick(today("09:55"));
    let c = p.tick(today("10:00"));
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].kind, ChangeKind::Started);
    assert!(c[0].booking.warned_end, "the start announces the end");
    assert_eq!(p.next_due(), Some(today("10:15")));
    assert!(p.tick(today("10:05")).is_empty(), "no second word");
    assert!(p.tick(today("10:14:59")).is_empty());

    // Extended to 11:15 at 10:10, it is long enough again: warned at 11:05.
    let c = p
        .apply(
            &user("bob"),
            Op::Extend {
                id: b.id,
                end: today("11:15"),
            },
            today("10:10"),
        )
        .unwrap();
    assert!(!c[0].booking.warned_end);
    assert_eq!(p.next_due(), Some(today("11:05")));
    let c = p.tick(today("11:05"));
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].kind, ChangeKind::SlotEnding);

    // Exactly twice the warning (30 minutes, with a 15-minute warning) is warned, 15 in.
    let mut p = plan(Policy::from_toml("end_warning = \"15m\"").unwrap());
    create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("10:30")),
        now(),
    );
    let c = p.tick(today("10:00"));
    assert!(!c[0].booking.warned_end);
    assert_eq!(p.next_due(), Some(today("10:15")));
    assert_eq!(p.tick(today("10:15"))[0].kind, ChangeKind::SlotEnding);
}

/// A cluster of two nodes, `n1` with GPUs 0–1 and `n2` with GPUs 2–4.
fn cluster() -> Plan {
    let gpus = (0..5)
        .map(|i| Gpu {
            uuid: uuid(i),
            index: i as u32,
            name: format!("Node GPU {i}"),
            memory_total: 80 * GIB,
            server: "cluster".into(),
            simulated: false,
            node: Some(if i < 2 { "n1" } else { "n2" }.into()),
        })
        .collect();
    Plan::new(gpus, Policy::default(), Vec::new())
}

fn any(count: u32) -> GpuSelection {
    GpuSelection::Count {
        count,
        min_memory: None,
    }
}

#[test]
fn a_booking_by_count_takes_its_gpus_from_one_node_of_a_cluster() {
    let mut p = cluster();
    // n1 has one GPU free from 10:00; n2 all three: two GPUs come from n2, not one of each.
    create(
        &mut p,
        &user("bob"),
        book_at(named(&[0]), today("10:00"), today("12:00")),
        now(),
    );
    let b = create(
        &mut p,
        &user("ana"),
        book_at(any(2), today("10:00"), today("11:00")),
        now(),
    );
    assert_eq!(b.gpus, vec![uuid(2), uuid(3)]);
    // One GPU left on n2 and one on n1: three free GPUs, but no node has two.
    let before = snapshot(&p);
    let e = p
        .apply(
            &user("cy"),
            book_at(any(2), today("10:00"), today("11:00")),
            now(),
        )
        .unwrap_err();
    assert!(matches!(e, PlanError::Conflict(_)), "{e:?}");
    assert_eq!(snapshot(&p), before);
    // More than any node has is refused as such, whatever is free.
    let e = p
        .apply(
            &user("cy"),
            book_at(any(4), today("14:00"), today("15:00")),
            now(),
        )
        .unwrap_err();
    assert_eq!(
        e,
        PlanError::Invalid("asks for 4 GPUs on one node; the most a node here has is 3".into())
    );
    // As soon as possible: the earliest time some node has two free, here n2 from 11:00.
    let q = create(
        &mut p,
        &user("cy"),
        book_asap(any(2), Duration::hours(1)),
        today("10:00"),
    );
    assert_eq!(q.interval.start, today("11:00"));
    assert!(
        q.gpus
            .iter()
            .all(|g| [uuid(2), uuid(3), uuid(4)].contains(g)),
        "{q:?}"
    );
}

fn outside(gpus: &[usize], from: &str, to: &str, what: &str) -> Outside {
    Outside {
        gpus: gpus.iter().map(|i| uuid(*i)).collect(),
        interval: Interval {
            start: today(from),
            end: today(to),
        },
        what: what.into(),
    }
}

#[test]
fn bookings_go_around_what_slurm_holds_outside_gpubook() {
    let mut p = cluster();
    // Bob's Slurm job holds all of n2 until 12:00, an admin's reservation n1 from 13:00.
    p.set_outside(vec![
        outside(&[2, 3, 4], "09:00", "12:00", "Slurm job 42: train (bob)"),
        outside(&[2], "10:00", "11:00", "Slurm job 43: eval (bob)"),
        outside(&[0, 1], "13:00", "15:00", "Slurm reservation maint (root)"),
    ]);
    // Two GPUs now: n1, where Slurm can hold them, not n2 where Bob's job runs.
    let b = create(
        &mut p,
        &user("ana"),
        book_at(any(2), today("10:00"), today("11:00")),
        now(),
    );
    assert_eq!(b.gpus, vec![uuid(0), uuid(1)]);
    // Three: only n2 has three, and Slurm holds it then: refused with what holds it.
    let before = snapshot(&p);
    let e = p
        .apply(
            &user("cy"),
            book_at(any(3), today("10:00"), today("11:00")),
            now(),
        )
        .unwrap_err();
    let PlanError::Busy(words) = &e else {
        panic!("{e:?}")
    };
    assert!(words.contains("Slurm job 42: train (bob)"), "{words}");
    assert!(words.contains("12:00"), "{words}");
    assert_eq!(snapshot(&p), before);
    // As soon as possible: three GPUs when Bob's job has ended, not before.
    let q = create(
        &mut p,
        &user("cy"),
        book_asap(any(3), Duration::hours(1)),
        today("10:00"),
    );
    assert_eq!(q.interval.start, today("12:00"));
    // Two GPUs for three hours from 11:00: n1 is the admin's from 13:00, n2 Bob's until 12:00
    // and cy's until 13:00; the earliest is n2 at 13:00.
    let r = create(
        &mut p,
        &user("dan"),
        book_asap(any(2), Duration::hours(3)),
        today("10:00"),
    );
    assert_eq!(r.interval.start, today("13:00"));
    assert!(r
        .gpus
        .iter()
        .all(|g| [uuid(2), uuid(3), uuid(4)].contains(g)));
    // Ana's booking moved into the reservation is refused, and stays where it was.
    let e = p
        .apply(
            &user("ana"),
            Op::Move {
                id: b.id,
                interval: Interval {
                    start: today("12:00"),
                    end: today("14:00"),
                },
                gpus: None,
            },
            now(),
        )
        .unwrap_err();
    assert!(
        matches!(&e, PlanError::Busy(w) if w.contains("Slurm reservation maint (root)")),
        "{e:?}"
    );
    assert_eq!(p.get(b.id).unwrap().interval.start, today("10:00"));
    // Once Slurm holds nothing, the same booking goes through.
    p.set_outside(Vec::new());
    create(
        &mut p,
        &user("cy"),
        book_at(any(3), today("10:00"), today("11:00")),
        now(),
    );
}

#[test]
fn a_booking_on_a_node_stays_on_that_node() {
    let mut p = cluster();
    let on = |node: &str, count| GpuSelection::OnNode {
        node: node.into(),
        count,
    };
    // n1 is free, but the rectangle was drawn on n2: n2 it is.
    let b = create(
        &mut p,
        &user("ana"),
        book_at(on("n2", 2), today("10:00"), today("11:00")),
        now(),
    );
    assert!(b
        .gpus
        .iter()
        .all(|g| [uuid(2), uuid(3), uuid(4)].contains(g)));
    // As soon as possible on n2 waits for n2 (n1 would be free now), and stays there when the
    // queue moves it earlier.
    let q = create(
        &mut p,
        &user("cy"),
        book_asap(on("n2", 2), Duration::hours(1)),
        today("10:00"),
    );
    assert_eq!(q.interval.start, today("11:00"));
    assert!(q
        .gpus
        .iter()
        .all(|g| [uuid(2), uuid(3), uuid(4)].contains(g)));
    p.apply(&user("ana"), Op::Cancel { id: b.id }, now())
        .unwrap();
    let moved = p.get(q.id).unwrap();
    assert_eq!(moved.interval.start, now(), "{moved:?}");
    assert!(moved
        .gpus
        .iter()
        .all(|g| [uuid(2), uuid(3), uuid(4)].contains(g)));
    // No such node; more GPUs than the node has.
    let before = snapshot(&p);
    let e = p
        .apply(
            &user("cy"),
            book_at(on("n9", 1), today("14:00"), today("15:00")),
            now(),
        )
        .unwrap_err();
    assert!(
        matches!(&e, PlanError::NotFound(m) if m.contains("n9")),
        "{e:?}"
    );
    let e = p
        .apply(
            &user("cy"),
            book_at(on("n1", 3), today("14:00"), today("15:00")),
            now(),
        )
        .unwrap_err();
    assert_eq!(
        e,
        PlanError::Invalid("asks for 3 GPUs of node n1, which has 2".into())
    );
    assert_eq!(snapshot(&p), before);
}
