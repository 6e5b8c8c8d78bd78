//! How long the plan takes to decide, at the size of a busy lab's year: 64 GPUs and 100,000
//! bookings of 1 to 48 hours. Run with `cargo bench -p gpubook-core --bench plan`.
//! `GPUBOOK_BENCH_CLUSTER=1` makes it a Slurm cluster's size instead: 256 GPUs on 32 nodes of
//! 8, where a booking by count takes its GPUs from one node.
//!
//! Each decision is timed alone. Read-only questions (`conflicts`, `place`) run on the one
//! plan. Decisions that change the plan (`apply`) run on a clone made outside the timed
//! region and renewed every [`BATCH`] decisions (a refused one changes nothing; an accepted
//! one adds a booking, so a clone drifts by at most `BATCH` bookings, at random places of
//! the year).

use chrono::{DateTime, Duration, Utc};
use gpubook_core::policy::OverPolicy;
use gpubook_core::{
    Actor, Booking, BookingId, BookingState, Gpu, GpuSelection, GpuUuid, Interval, Op, Plan,
    Policy, Role, When,
};
use std::hint::black_box;
use std::time::Instant;

/// The lab's GPUs: 64 on one server, or a cluster's 256 on nodes of [`NODE`].
fn gpu_count() -> usize {
    if cluster() {
        256
    } else {
        64
    }
}

fn cluster() -> bool {
    std::env::var_os("GPUBOOK_BENCH_CLUSTER").is_some_and(|v| v == "1")
}

/// GPUs per node in a cluster.
const NODE: usize = 8;
const BOOKINGS: usize = 100_000;
const OWNERS: usize = 24;
const SAMPLES: usize = 2_000;
/// Decisions taken on one clone before a fresh one: a clone of this plan takes tens of
/// milliseconds, and a batch adds at most this many bookings to 100,000.
const BATCH: usize = 50;
const QUARTER: i64 = 15 * 60;

/// xorshift64*: small, seeded, and the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

fn uuid(i: usize) -> GpuUuid {
    GpuUuid(format!("GPU-{i:02}"))
}

fn gpus() -> Vec<Gpu> {
    (0..gpu_count())
        .map(|i| Gpu {
            uuid: uuid(i),
            index: i as u32,
            name: "Simulated H200".into(),
            memory_total: 141 << 30,
            server: "bench".into(),
            simulated: true,
            node: cluster().then(|| format!("node{:02}", i / NODE)),
        })
        .collect()
}

/// A booking's length in quarter hours, 1 h to 48 h, most of them short as in a busy lab.
fn length(rng: &mut Rng) -> i64 {
    let (lo, hi) = match rng.range(0, 99) {
        0..=69 => (4, 8),
        70..=89 => (8, 24),
        90..=96 => (24, 48),
        97..=98 => (48, 96),
        _ => (96, 192),
    };
    rng.range(lo, hi)
}

/// GPUs per booking: mostly one, some two, four or eight (aligned, as people book them).
fn width(rng: &mut Rng) -> usize {
    match rng.range(0, 99) {
        0..=87 => 1,
        88..=95 => 2,
        96..=98 => 4,
        _ => 8,
    }
}

/// A year of bookings from `start`. Each goes on the group of GPUs (one, or an aligned two,
/// four or eight) that is free soonest, after a gap of up to four hours or none; bookings
/// before `now` have ended, and a few later ones were cancelled or wait for approval.
fn year(rng: &mut Rng, start: DateTime<Utc>, now: DateTime<Utc>) -> Vec<Booking> {
    let mut free_from = vec![start; gpu_count()];
    let mut out = Vec::with_capacity(BOOKINGS);
    while out.len() < BOOKINGS {
        let w = width(rng);
        let (first, frontier) = (0..gpu_count() / w)
            .map(|k| (k * w, (k * w..k * w + w).map(|g| free_from[g]).max()))
            .min_by_key(|(_, f)| *f)
            .expect("at least one group");
        let frontier = frontier.expect("w >= 1");
        let group = first..first + w;
        let gap = if rng.chance(0.4) {
            0
        } else {
            rng.range(1, 16) * QUARTER
        };
        let begin = frontier + Duration::seconds(gap);
        let end = begin + Duration::seconds(length(rng) * QUARTER);
        let state = if end <= now {
            BookingState::Ended
        } else if begin <= now {
            BookingState::Active
        } else if rng.chance(0.03) {
            BookingState::Cancelled
        } else if rng.chance(0.01) {
            BookingState::PendingApproval
        } else {
            BookingState::Confirmed
        };
        if state.holds_gpus() || state == BookingState::Ended {
            for g in group.clone() {
                free_from[g] = end;
            }
        }
        let id = out.len() as u64 + 1;
        out.push(Booking {
            id: BookingId(id),
            owner: format!("user{:02}", rng.range(0, OWNERS as i64 - 1)),
            gpus: group.map(uuid).collect(),
            interval: Interval { start: begin, end },
            title: format!("run {id}"),
            state,
            job: None,
            asap: None,
            pending_reason: None,
            pending_since: None,
            created_at: begin - Duration::days(3),
            revision: 1,
            warned_start: state != BookingState::Confirmed,
            warned_end: state == BookingState::Ended,
            run: None,
            usage: None,
        });
    }
    out
}

/// Distinct GPUs, `n` of them, at random.
fn pick_gpus(rng: &mut Rng, n: usize) -> Vec<GpuUuid> {
    let mut picked: Vec<usize> = Vec::with_capacity(n);
    while picked.len() < n {
        let g = rng.range(0, gpu_count() as i64 - 1) as usize;
        if !picked.contains(&g) {
            picked.push(g);
        }
    }
    picked.sort_unstable();
    picked.into_iter().map(uuid).collect()
}

/// Timings of one kind of decision, in microseconds, and how the decisions came out.
struct Series {
    name: String,
    micros: Vec<f64>,
    outcomes: Vec<(String, usize)>,
}

impl Series {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            micros: Vec::with_capacity(SAMPLES),
            outcomes: Vec::new(),
        }
    }

    fn record(&mut self, started: Instant, outcome: &str) {
        self.micros.push(started.elapsed().as_secs_f64() * 1e6);
        match self.outcomes.iter_mut().find(|(o, _)| o == outcome) {
            Some((_, n)) => *n += 1,
            None => self.outcomes.push((outcome.into(), 1)),
        }
    }

    fn row(&mut self) -> String {
        self.micros.sort_by(f64::total_cmp);
        let n = self.micros.len();
        let at = |q: f64| self.micros[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(o, c)| format!("{o} {c}"))
            .collect();
        format!(
            "{:<48} {:>7} {:>10.1} {:>10.1} {:>10.1}   {}",
            self.name,
            n,
            at(0.5),
            at(0.99),
            self.micros[n - 1],
            outcomes.join(", ")
        )
    }
}

fn outcome<T>(r: &Result<T, gpubook_core::PlanError>) -> &'static str {
    use gpubook_core::PlanError as E;
    match r {
        Ok(_) => "ok",
        Err(E::Conflict(_)) => "conflict",
        Err(E::OverPolicy { .. }) => "over policy",
        Err(E::Invalid(_)) => "invalid",
        Err(E::NotFound(_)) => "not found",
        Err(E::NotAllowed(_)) => "not allowed",
        Err(E::Changed { .. }) => "changed",
        Err(E::Maintenance(_)) => "maintenance",
        Err(E::Busy(_)) => "busy",
    }
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start: DateTime<Utc> = "2026-01-05T00:00:00Z".parse().expect("RFC 3339");
    let now = start + Duration::days(7) + Duration::hours(9);

    let made = Instant::now();
    let bookings = year(&mut rng, start, now);
    let last_end = bookings
        .iter()
        .map(|b| b.interval.end)
        .max()
        .expect("bookings");
    let gpu_hours: i64 = bookings
        .iter()
        .filter(|b| b.state != BookingState::Cancelled)
        .map(|b| b.interval.duration().num_seconds() * b.gpus.len() as i64)
        .sum::<i64>()
        / 3600;
    let holding = bookings.iter().filter(|b| b.state.holds_gpus()).count();
    let generated = made.elapsed();

    let policy = Policy {
        max_booking_secs: Some(48 * 3600),
        max_ahead_secs: Some(400 * 86_400),
        weekly_quota_gpu_hours: Some(2_000),
        max_gpus_at_once: Some(16),
        over_policy: OverPolicy::Approval,
        ..Policy::default()
    };
    let built = Instant::now();
    let plan = Plan::new(gpus(), policy, bookings);
    let built = built.elapsed();
    let cloned = Instant::now();
    let copy = black_box(plan.clone());
    let cloned = cloned.elapsed();
    drop(copy);

    println!("gpubook-core plan benchmark");
    let gpus_n = gpu_count();
    println!(
        "  {gpus_n} GPUs, {BOOKINGS} bookings ({holding} holding GPUs) from {} to {} ({} days), \
         {gpu_hours} GPU-hours booked ({:.0}% of the span), {OWNERS} owners",
        start.format("%Y-%m-%d"),
        last_end.format("%Y-%m-%d"),
        (last_end - start).num_days(),
        100.0 * gpu_hours as f64 / ((last_end - start).num_hours() as f64 * gpus_n as f64)
    );
    let per_owner = plan.bookings().filter(|b| b.owner == "user07").count();
    println!(
        "  {per_owner} of them by user07, who asks below as a user: quota and limits scan them"
    );
    println!(
        "  generated in {:.0} ms, Plan::new in {:.0} ms, one clone in {:.1} ms; now = {}",
        generated.as_secs_f64() * 1e3,
        built.as_secs_f64() * 1e3,
        cloned.as_secs_f64() * 1e3,
        now.format("%Y-%m-%d %H:%M UTC")
    );
    println!();

    let admin = Actor {
        user: "root".into(),
        role: Role::Admin,
    };
    let user = Actor {
        user: "user07".into(),
        role: Role::User,
    };
    let horizon = (last_end - now).num_seconds() / QUARTER;
    let random_at = |rng: &mut Rng| -> (Vec<GpuUuid>, Interval) {
        let n = [1, 1, 1, 2, 2, 4][rng.range(0, 5) as usize];
        let begin = now + Duration::seconds(rng.range(1, horizon) * QUARTER);
        let end = begin + Duration::seconds(rng.range(4, 32) * QUARTER);
        (pick_gpus(rng, n), Interval { start: begin, end })
    };

    let mut rows = Vec::new();

    // (a) Booking decisions on named GPUs at a random future time.
    let mut s = Series::new("conflicts(), 1-4 named GPUs, 1-8 h");
    for _ in 0..SAMPLES {
        let (g, i) = random_at(&mut rng);
        let t = Instant::now();
        let c = black_box(plan.conflicts(&g, &i, None));
        s.record(t, if c.is_empty() { "free" } else { "taken" });
    }
    rows.push(s.row());

    for (name, actor) in [
        ("apply(Book named, At) by an admin", &admin),
        ("apply(Book named, At) by a user (limits)", &user),
    ] {
        let mut s = Series::new(name);
        let mut p = plan.clone();
        for n in 0..SAMPLES {
            if n % BATCH == 0 {
                p = plan.clone();
            }
            let (g, i) = random_at(&mut rng);
            let op = Op::Book {
                gpus: GpuSelection::Named(g),
                when: When::At(i),
                title: "bench".into(),
                job: None,
            };
            let t = Instant::now();
            let r = black_box(p.apply(actor, op, now));
            s.record(t, outcome(&r));
        }
        rows.push(s.row());
    }

    // The same where the GPUs are free (found beforehand, untimed): the accepted path, with
    // the policy checks and the indexing of the new booking.
    for (name, actor) in [
        ("apply(Book named, At) free slot, admin", &admin),
        ("apply(Book named, At) free slot, user (limits)", &user),
    ] {
        let mut s = Series::new(name);
        let mut p = plan.clone();
        for n in 0..SAMPLES {
            if n % BATCH == 0 {
                p = plan.clone();
            }
            let (g, i) = loop {
                let (g, i) = random_at(&mut rng);
                if p.conflicts(&g, &i, None).is_empty() {
                    break (g, i);
                }
            };
            let op = Op::Book {
                gpus: GpuSelection::Named(g),
                when: When::At(i),
                title: "bench".into(),
                job: None,
            };
            let t = Instant::now();
            let r = black_box(p.apply(actor, op, now));
            s.record(t, outcome(&r));
        }
        rows.push(s.row());
    }

    // (b) "As soon as possible": the earliest start at which N GPUs are free for a while,
    // asked at a random moment of the year (so a batch's bookings do not queue up behind
    // each other).
    let all: Vec<GpuUuid> = (0..gpu_count()).map(uuid).collect();
    let asked_at =
        |rng: &mut Rng| now + Duration::seconds(rng.range(0, horizon * 9 / 10) * QUARTER);
    let asap = |rng: &mut Rng| {
        let count = [1, 1, 2, 4, 8][rng.range(0, 4) as usize];
        (count, Duration::seconds(rng.range(4, 96) * QUARTER))
    };
    let mut s = Series::new("place(), 1-8 GPUs, 1-24 h");
    for _ in 0..SAMPLES {
        let (count, d) = asap(&mut rng);
        let from = asked_at(&mut rng);
        let t = Instant::now();
        let placed = black_box(plan.place(&all, count as usize, d, from));
        s.record(t, if placed.is_some() { "placed" } else { "none" });
    }
    rows.push(s.row());

    for (name, actor) in [
        ("apply(Book count, Asap) by an admin", &admin),
        ("apply(Book count, Asap) by a user (limits)", &user),
    ] {
        let mut s = Series::new(name);
        let mut p = plan.clone();
        for n in 0..SAMPLES {
            if n % BATCH == 0 {
                p = plan.clone();
            }
            let (count, d) = asap(&mut rng);
            let op = Op::Book {
                gpus: GpuSelection::Count {
                    count,
                    min_memory: None,
                },
                when: When::Asap(d),
                title: "bench".into(),
                job: None,
            };
            let from = asked_at(&mut rng);
            let t = Instant::now();
            let r = black_box(p.apply(actor, op, from));
            s.record(t, outcome(&r));
        }
        rows.push(s.row());
    }

    // (f) Maintenance over 1-8 GPUs (or the whole server) for 2-8 h at a random future time:
    // every booking in its way moved or cancelled in the one decision. Each sample on a fresh
    // clone, so the year stays as busy.
    let mut s = Series::new("add_maintenance 1-8 GPUs or all, 2-8 h");
    for n in 0..SAMPLES / 10 {
        let mut p = plan.clone();
        let (_, window) = random_at(&mut rng);
        let width = 1 + rng.range(0, 7) as usize;
        let gpus = (n % 8 != 0).then(|| pick_gpus(&mut rng, width));
        let window = Interval {
            start: window.start,
            end: window.start + Duration::seconds(rng.range(8, 32) * QUARTER),
        };
        let req = gpubook_core::NewMaintenance {
            gpus,
            interval: window,
            reason: "bench".into(),
            cause: gpubook_core::MaintenanceCause::Admin,
        };
        let t = Instant::now();
        let r = black_box(p.add_maintenance(&admin, req, now));
        let moved = r.as_ref().map_or(0, |(_, c)| c.len());
        s.record(
            t,
            match moved {
                0 => "nothing in the way",
                1..=4 => "1-4 bookings moved",
                _ => "5+ bookings moved",
            },
        );
    }
    rows.push(s.row());

    println!(
        "{:<48} {:>7} {:>10} {:>10} {:>10}   outcomes",
        "decision (µs)", "samples", "median", "p99", "max"
    );
    println!("{}", "-".repeat(110));
    for r in rows {
        println!("{r}");
    }
    quota_held_queue();
}

/// The worst case of the queue's search past the policy: a cancel frees every GPU, and each
/// of a user's queued "as soon as possible" bookings would overrun their weekly quota at every
/// start the queue tries (256 grid steps each), so none moves.
fn quota_held_queue() {
    const HELD: u64 = 20;
    let wednesday: DateTime<Utc> = "2026-03-04T09:00:00Z".parse().expect("RFC 3339");
    let policy = Policy {
        weekly_quota_gpu_hours: Some(10),
        over_policy: OverPolicy::Approval,
        ..Policy::default()
    };
    let gpus: Vec<Gpu> = gpus().into_iter().take(8).collect();
    let all: Vec<GpuUuid> = gpus.iter().map(|g| g.uuid.clone()).collect();
    let admin = Actor {
        user: "root".into(),
        role: Role::Admin,
    };
    let mut plan = Plan::new(gpus, policy, Vec::new());
    let user = |i: u64| Actor {
        user: format!("user{i:02}"),
        role: Role::User,
    };
    // Each user has used 9 of their 10 GPU-hours this week (booked on Monday and Tuesday).
    let monday = wednesday - Duration::days(2) - Duration::hours(9);
    for i in 0..HELD {
        let from = monday + Duration::hours(9 * (i / 8) as i64);
        plan.apply(
            &user(i),
            Op::Book {
                gpus: GpuSelection::Named(vec![all[(i % 8) as usize].clone()]),
                when: When::At(Interval {
                    start: from,
                    end: from + Duration::hours(9),
                }),
                title: "used".into(),
                job: None,
            },
            monday - Duration::hours(1),
        )
        .expect("the used hours");
    }
    // The admin holds every GPU to Monday; each user queues 2 hours as soon as possible.
    let blocker = plan
        .apply(
            &admin,
            Op::Book {
                gpus: GpuSelection::Named(all.clone()),
                when: When::At(Interval {
                    start: wednesday,
                    end: wednesday + Duration::days(5),
                }),
                title: "maintenance".into(),
                job: None,
            },
            wednesday,
        )
        .expect("the blocker");
    let blocker = blocker[0].booking.id;
    for i in 0..HELD {
        plan.apply(
            &user(i),
            Op::Book {
                gpus: GpuSelection::Count {
                    count: 1,
                    min_memory: None,
                },
                when: When::Asap(Duration::hours(2)),
                title: "held".into(),
                job: None,
            },
            wednesday,
        )
        .expect("a queued booking");
    }
    let queued = plan
        .bookings()
        .filter(|b| b.title == "held" && b.state == BookingState::Confirmed)
        .count();
    assert_eq!(queued as u64, HELD, "every queued booking is confirmed");
    let mut times = Vec::new();
    for _ in 0..20 {
        let mut p = plan.clone();
        let t = Instant::now();
        let r = black_box(p.apply(&admin, Op::Cancel { id: blocker }, wednesday));
        times.push(t.elapsed());
        r.expect("the cancel");
    }
    times.sort();
    println!();
    println!(
        "cancel freeing every GPU for {HELD} queued bookings the quota holds back (256 tries each): median {:.1} ms, max {:.1} ms",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
}
