//! Property tests of maintenance on the plan: random bookings (some started) on a four-GPU
//! server, then a random maintenance period over some GPUs or the whole server. What the plan
//! decides is checked by brute force over [`Plan::bookings`], never through its indexes:
//!
//! - no booking that holds GPUs overlaps maintenance on a GPU it holds, nor another booking;
//! - a moved booking keeps its GPU count and length, starts no earlier than now nor than it
//!   did, within the horizon, on GPUs with at least as much memory, and at the earliest
//!   such start (no earlier one had enough GPUs free);
//! - a cancelled one had no such start within the horizon;
//! - a running one keeps running until the maintenance starts, and ends there;
//! - bookings out of the way are untouched; each change carries the maintenance's note;
//! - afterwards nothing can be booked into it, and "as soon as possible" lands outside it.

use chrono::{DateTime, Duration, Utc};
use gpubook_core::{
    Actor, Booking, BookingId, BookingState, ChangeKind, Gpu, GpuSelection, GpuUuid, Interval,
    MaintenanceCause, MaintenanceOutcome, NewMaintenance, Note, Op, Plan, PlanError, Policy, Role,
    When,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

const GIB: u64 = 1 << 30;
const MEMORY: [u64; 4] = [80, 80, 40, 80];
const GRID: i64 = 15 * 60;
const MAX_AHEAD: i64 = 2 * 86_400;
const T0: &str = "2026-03-07T06:00:00Z";

fn t0() -> DateTime<Utc> {
    T0.parse().unwrap()
}

fn uuid(i: usize) -> GpuUuid {
    GpuUuid(format!("GPU-{i}"))
}

fn server() -> Vec<Gpu> {
    MEMORY
        .iter()
        .enumerate()
        .map(|(i, m)| Gpu {
            uuid: uuid(i),
            index: i as u32,
            name: format!("Test GPU {i}"),
            memory_total: m * GIB,
            server: "lab1".into(),
            simulated: true,
            node: None,
        })
        .collect()
}

fn memory_of(g: &GpuUuid) -> u64 {
    MEMORY[(0..4).find(|i| uuid(*i) == *g).unwrap()] * GIB
}

fn admin() -> Actor {
    Actor {
        user: "alice".into(),
        role: Role::Admin,
    }
}

fn user() -> Actor {
    Actor {
        user: "bob".into(),
        role: Role::User,
    }
}

/// A booking asked for: GPUs by index, start and length in grid slots after T0.
#[derive(Debug, Clone)]
struct Ask {
    gpus: Vec<usize>,
    start: i64,
    len: i64,
    by_admin: bool,
}

fn ask() -> impl Strategy<Value = Ask> {
    (
        proptest::sample::subsequence(vec![0usize, 1, 2, 3], 1..=4),
        0i64..96,
        1i64..32,
        any::<bool>(),
    )
        .prop_map(|(gpus, start, len, by_admin)| Ask {
            gpus,
            start,
            len,
            by_admin,
        })
}

/// The maintenance asked for: GPUs (None: all), start and length in grid slots after `now`,
/// and how far time moves on before it is made (so some bookings have started).
#[derive(Debug, Clone)]
struct Maint {
    gpus: Option<Vec<usize>>,
    start: i64,
    len: i64,
    advance: i64,
    fault: bool,
}

fn maint() -> impl Strategy<Value = Maint> {
    (
        prop_oneof![
            1 => Just(None),
            3 => proptest::sample::subsequence(vec![0usize, 1, 2, 3], 1..=3).prop_map(Some),
        ],
        0i64..40,
        1i64..48,
        0i64..24,
        prop_oneof![5 => Just(false), 1 => Just(true)],
    )
        .prop_map(|(gpus, start, len, advance, fault)| Maint {
            gpus,
            start,
            len,
            advance,
            fault,
        })
}

fn slots(n: i64) -> Duration {
    Duration::seconds(n * GRID)
}

fn holds(b: &Booking) -> bool {
    matches!(b.state, BookingState::Confirmed | BookingState::Active)
}

/// Whether `count` GPUs with at least `min_mem` each are free of every holding booking but
/// `except` and of every maintenance period over `[s, s + d)`.
fn fits(
    plan: &Plan,
    count: usize,
    min_mem: u64,
    s: DateTime<Utc>,
    d: Duration,
    except: BookingId,
) -> bool {
    let iv = Interval {
        start: s,
        end: s + d,
    };
    let free = (0..4)
        .map(uuid)
        .filter(|g| memory_of(g) >= min_mem)
        .filter(|g| {
            plan.bookings()
                .filter(|b| b.id != except && holds(b))
                .all(|b| !b.gpus.contains(g) || !b.interval.overlaps(&iv))
        })
        .filter(|g| {
            plan.maintenance()
                .all(|m| !m.gpus.contains(g) || !m.interval.overlaps(&iv))
        })
        .count();
    free >= count
}

/// Every instant at which a free stretch can begin: `from` and every end of a booking or of
/// maintenance after it. The earliest fit is always one of these.
fn candidate_starts(plan: &Plan, from: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut out = vec![from];
    out.extend(plan.bookings().filter(|b| holds(b)).map(|b| b.interval.end));
    out.extend(plan.maintenance().map(|m| m.interval.end));
    out.retain(|t| *t >= from);
    out.sort();
    out.dedup();
    out
}

fn run(asks: Vec<Ask>, m: Maint) -> Result<(), TestCaseError> {
    let policy = Policy {
        granularity_secs: GRID,
        max_ahead_secs: Some(MAX_AHEAD),
        ..Policy::default()
    };
    let mut plan = Plan::new(server(), policy, vec![]);
    for a in &asks {
        let actor = if a.by_admin { admin() } else { user() };
        let start = t0() + slots(a.start);
        let _ = plan.apply(
            &actor,
            Op::Book {
                gpus: GpuSelection::Named(a.gpus.iter().map(|i| uuid(*i)).collect()),
                when: When::At(Interval {
                    start,
                    end: start + slots(a.len),
                }),
                title: "t".into(),
                job: None,
            },
            t0(),
        );
    }
    let now = t0() + slots(m.advance) + Duration::seconds(7);
    plan.tick(now);
    let before: BTreeMap<BookingId, Booking> = plan.bookings().map(|b| (b.id, b.clone())).collect();
    let start = now + slots(m.start);
    let req = NewMaintenance {
        gpus: m
            .gpus
            .as_ref()
            .map(|g| g.iter().map(|i| uuid(*i)).collect()),
        interval: Interval {
            start,
            end: start + slots(m.len),
        },
        reason: "driver 570".into(),
        cause: if m.fault {
            MaintenanceCause::Fault
        } else {
            MaintenanceCause::Admin
        },
    };
    // A user cannot make one, and trying changes nothing.
    let refused = plan.add_maintenance(&user(), req.clone(), now);
    prop_assert!(matches!(refused, Err(PlanError::NotAllowed(_))));
    prop_assert_eq!(plan.maintenance().count(), 0);
    let (made, changes) = plan.add_maintenance(&admin(), req, now).unwrap();
    prop_assert!(made.interval.start >= now);
    if m.fault {
        prop_assert_eq!(made.interval.start, now);
    }

    // No holding booking overlaps maintenance or another holding booking on a GPU.
    let holding: Vec<&Booking> = plan.bookings().filter(|b| holds(b)).collect();
    for b in &holding {
        for g in &b.gpus {
            prop_assert!(
                !made.blocks(g, &b.interval),
                "booking {} {:?} in maintenance",
                b.id,
                b.interval
            );
        }
        for o in &holding {
            if o.id < b.id && o.interval.overlaps(&b.interval) {
                prop_assert!(o.gpus.iter().all(|g| !b.gpus.contains(g)));
            }
        }
    }

    let changed: BTreeMap<BookingId, &gpubook_core::Change> =
        changes.iter().map(|c| (c.booking.id, c)).collect();
    let horizon = now + Duration::seconds(MAX_AHEAD);
    for (id, old) in &before {
        let new = plan.get(*id).unwrap();
        let in_way = holds(old)
            && old.gpus.iter().any(|g| made.blocks(g, &old.interval))
            && old.interval.end > now;
        let Some(c) = changed.get(id) else {
            prop_assert!(!in_way, "booking {id} was in the way and not changed");
            prop_assert_eq!(new, old);
            continue;
        };
        prop_assert!(in_way, "booking {} changed though not in the way", id);
        let Some(Note::Maintenance {
            id: mid,
            reason,
            outcome,
            ..
        }) = &c.note
        else {
            return Err(TestCaseError::fail(format!("no maintenance note on {id}")));
        };
        prop_assert_eq!(*mid, made.id);
        prop_assert_eq!(reason.as_str(), "driver 570");
        prop_assert_eq!(c.before, Some(old.interval));
        let min_mem = old.gpus.iter().map(memory_of).min().unwrap();
        match (old.state, outcome) {
            (BookingState::Active, MaintenanceOutcome::CutShort) => {
                prop_assert_eq!(new.state, BookingState::Active);
                prop_assert_eq!(new.interval.end, made.interval.start);
                prop_assert!(new.interval.end > now);
                prop_assert_eq!(c.kind, ChangeKind::Changed);
            }
            (BookingState::Active, MaintenanceOutcome::Ended) => {
                prop_assert_eq!(new.state, BookingState::Ended);
                prop_assert!(made.interval.start <= now);
                prop_assert!(new.interval.end <= now);
            }
            (BookingState::Confirmed, MaintenanceOutcome::Moved) => {
                prop_assert_eq!(new.state, BookingState::Confirmed);
                prop_assert_eq!(new.gpus.len(), old.gpus.len());
                prop_assert_eq!(new.interval.duration(), old.interval.duration());
                prop_assert!(new.interval.start >= now);
                prop_assert!(new.interval.start >= old.interval.start);
                prop_assert!(new.interval.start <= horizon);
                prop_assert!(new.gpus.iter().all(|g| memory_of(g) >= min_mem));
                let from = old.interval.start.max(now);
                for s in candidate_starts(&plan, from) {
                    if s >= new.interval.start {
                        break;
                    }
                    prop_assert!(
                        !fits(
                            &plan,
                            old.gpus.len(),
                            min_mem,
                            s,
                            old.interval.duration(),
                            *id
                        ),
                        "booking {} moved to {} but fitted at {}",
                        id,
                        new.interval.start,
                        s
                    );
                }
            }
            (BookingState::Confirmed, MaintenanceOutcome::Cancelled) => {
                prop_assert_eq!(new.state, BookingState::Cancelled);
                let from = old.interval.start.max(now);
                for s in candidate_starts(&plan, from) {
                    if s > horizon {
                        break;
                    }
                    prop_assert!(
                        !fits(
                            &plan,
                            old.gpus.len(),
                            min_mem,
                            s,
                            old.interval.duration(),
                            *id
                        ),
                        "booking {} cancelled but fitted at {}",
                        id,
                        s
                    );
                }
            }
            (s, o) => {
                return Err(TestCaseError::fail(format!(
                    "booking {id} was {s} and became {o:?}"
                )))
            }
        }
    }

    // Nothing can be booked into it, by anyone; as-soon-as-possible lands outside it.
    let inside = Interval {
        start: made.interval.start,
        end: (made.interval.start + slots(1)).min(made.interval.end),
    };
    let into = plan.apply(
        &admin(),
        Op::Book {
            gpus: GpuSelection::Named(vec![made.gpus[0].clone()]),
            when: When::At(inside),
            title: "into".into(),
            job: None,
        },
        now,
    );
    if made.interval.start > now + slots(1) {
        prop_assert!(
            matches!(into, Err(PlanError::Maintenance(_))),
            "booked into maintenance: {:?}",
            into
        );
    }
    if let Ok(changes) = plan.apply(
        &user(),
        Op::Book {
            gpus: GpuSelection::Named(made.gpus.clone()),
            when: When::Asap(slots(2)),
            title: "asap".into(),
            job: None,
        },
        now,
    ) {
        let b = &changes[0].booking;
        prop_assert!(
            b.gpus.iter().all(|g| !made.blocks(g, &b.interval)),
            "asap {:?} in maintenance",
            b.interval
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn maintenance_moves_cancels_or_cuts_short_exactly_what_is_in_its_way(
        asks in proptest::collection::vec(ask(), 0..24),
        m in maint(),
    ) {
        run(asks, m)?;
    }
}

#[test]
fn ending_maintenance_early_gives_the_gpus_back_and_withdraws_a_future_one() {
    let mut plan = Plan::new(server(), Policy::default(), vec![]);
    let now = t0();
    let req = |start: DateTime<Utc>| NewMaintenance {
        gpus: Some(vec![uuid(2)]),
        interval: Interval {
            start,
            end: start + Duration::hours(4),
        },
        reason: "driver 570".into(),
        cause: MaintenanceCause::Admin,
    };
    let (running, _) = plan.add_maintenance(&admin(), req(now), now).unwrap();
    let (future, _) = plan
        .add_maintenance(&admin(), req(now + Duration::days(1)), now)
        .unwrap();
    let later = now + Duration::hours(1);
    assert!(matches!(
        plan.end_maintenance(&user(), running.id, later),
        Err(PlanError::NotAllowed(_))
    ));
    let (kept, _) = plan.end_maintenance(&admin(), running.id, later).unwrap();
    assert_eq!(kept.unwrap().interval.end, later);
    let (gone, _) = plan.end_maintenance(&admin(), future.id, later).unwrap();
    assert!(gone.is_none());
    assert_eq!(plan.maintenance().count(), 1);
    // GPU 2 can be booked again right away.
    plan.apply(
        &user(),
        Op::Book {
            gpus: GpuSelection::Named(vec![uuid(2)]),
            when: When::At(Interval {
                start: later,
                end: later + Duration::hours(30),
            }),
            title: "back".into(),
            job: None,
        },
        later,
    )
    .unwrap();
}
