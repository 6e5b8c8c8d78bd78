//! Each booking's GPU readings over its slot (`UsageSeries`): through the real agent binary on
//! simulated GPUs whose processes file puts alice's work on GPU 0, the series fills while her
//! booking runs and survives a `kill -9`; through the library on a clock the test moves, a
//! long booking that is extended stays within its points with every reading still counted.
//! (Another user being refused is `crates/cli/tests/usage_series_cli.rs`, with real users.)

mod common;
mod watch_support;

use chrono::{Duration as ChronoDuration, Utc};
use common::{sim_uuid, SERVER};
use gpubook_agent::clock::{Clock, ManualClock};
use gpubook_agent::gpu::sim::{SimReader, SIM_PROCESSES_FILE};
use gpubook_agent::gpu::GpuReader;
use gpubook_agent::series::{Series, FLUSH_EVERY};
use gpubook_agent::state::State;
use gpubook_agent::store::Store;
use gpubook_core::series::{MAX_POINTS_PER_BOOKING, MAX_POINTS_PER_GPU};
use gpubook_core::time::whole_seconds;
use gpubook_core::{Actor, BookingId, GpuSelection, Interval, Op, Policy, Role, When};
use gpubook_proto::{Request, Response, UsageSeriesRequest, UsageSeriesResponse};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watch_support::{seed_booking, Agent};

const GIB: u64 = 1 << 30;

async fn series(agent: &Agent, id: BookingId) -> UsageSeriesResponse {
    let conn = agent.connect().await;
    match conn
        .request(Request::UsageSeries(UsageSeriesRequest { id }))
        .await
    {
        Ok(Response::UsageSeries(s)) => s,
        other => panic!("{other:?}\n{}", agent.log()),
    }
}

fn readings(s: &UsageSeriesResponse) -> u64 {
    s.gpus[0].points.iter().map(|p| p.readings).sum()
}

#[tokio::test]
async fn a_running_booking_s_series_fills_and_survives_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let start = whole_seconds(Utc::now()) - ChronoDuration::seconds(30);
    let id = seed_booking(
        &Agent::state_dir_in(&dir),
        SimReader::new(2, SERVER).inventory(),
        "alice",
        vec![sim_uuid(0)],
        start,
        start + ChronoDuration::hours(2),
    );
    // Alice's training on GPU 0: 80 %, 6 GiB.
    std::fs::write(
        Agent::state_dir_in(&dir).join(SIM_PROCESSES_FILE),
        r#"[{"gpu": 0, "pid": 4242, "user": "alice", "used_bytes": 6442450944, "util": 80}]"#,
    )
    .unwrap();
    let agent = Agent::start(dir, &["--gpus", "sim:2", "--sample-secs", "0.2"]).await;

    // The agent's own user is an admin here (no policy): it sees alice's series.
    let until = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let s = series(&agent, id).await;
        if readings(&s) >= u64::from(3 * FLUSH_EVERY) {
            break s;
        }
        assert!(Instant::now() < until, "the series did not fill: {s:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(before.start, start);
    assert_eq!(
        before.bucket_secs, 60,
        "two hours on one GPU: a point a minute"
    );
    assert_eq!(before.gpus.len(), 1, "only the booked GPU: {before:#?}");
    let g = &before.gpus[0];
    assert_eq!((g.uuid.clone(), g.index), (sim_uuid(0), Some(0)));
    let p = g.points.last().unwrap();
    assert_eq!((p.util_mean, p.util_max), (80.0, 80), "{p:?}");
    assert_eq!((p.memory_mean, p.memory_max), (6 * GIB, 6 * GIB), "{p:?}");
    assert!(g
        .points
        .iter()
        .all(|p| p.at >= start && p.at < start + ChronoDuration::hours(2)));

    // Written at least every FLUSH_EVERY readings: after that many more, `kill -9` keeps
    // what was seen before.
    let seen = readings(&before);
    let until = Instant::now() + Duration::from_secs(30);
    while readings(&series(&agent, id).await) < seen + u64::from(FLUSH_EVERY) + 1 {
        assert!(Instant::now() < until, "no more readings");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dir = agent.kill();
    // Sampled rarely now, so what the series holds is what was stored before the kill.
    let agent = Agent::start(dir, &["--gpus", "sim:2", "--sample-secs", "60"]).await;
    let after = series(&agent, id).await;
    assert!(
        readings(&after) >= seen,
        "{} readings before the kill, {} after: {after:#?}",
        seen,
        readings(&after)
    );
    // The first minute is the same bucket, continued rather than started again.
    let (first, then) = (&after.gpus[0].points[0], &before.gpus[0].points[0]);
    assert_eq!((first.at, first.util_max), (then.at, then.util_max));
    assert!(first.readings >= then.readings, "{first:?} {then:?}");
}

#[test]
fn an_extended_week_long_booking_stays_within_its_points() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = whole_seconds(Utc::now());
    let clock = Arc::new(ManualClock::new(t0));
    let db = dir.path().join("agent.db");
    let mut reader = SimReader::new(8, SERVER);
    let state = State::load(
        Store::open(&db).unwrap(),
        reader.inventory(),
        Policy {
            granularity_secs: 1,
            ..Policy::default()
        },
        clock.clone(),
    )
    .unwrap();
    let admin = Actor {
        user: "root".into(),
        role: Role::Admin,
    };
    let all: Vec<_> = (0..8).map(sim_uuid).collect();
    let booked = state
        .change(
            &admin,
            Op::Book {
                gpus: GpuSelection::Named(all),
                when: When::At(Interval {
                    start: t0,
                    end: t0 + ChronoDuration::days(2),
                }),
                title: "long".into(),
                job: None,
            },
        )
        .unwrap();
    let id = booked[0].booking.id;
    state.tick().unwrap();
    let series = Series::open(&db).unwrap();
    let mut taken = 0u64;
    let mut feed = |until: chrono::DateTime<Utc>, step: ChronoDuration| {
        while clock.now() < until {
            let mut r = reader.read().unwrap();
            r.at = clock.now();
            series.observe(&state, &r);
            taken += 1;
            clock.advance(step);
            state.tick().unwrap();
        }
    };
    // Two days on 8 GPUs: 360 points each, so 8-minute buckets.
    feed(t0 + ChronoDuration::days(1), ChronoDuration::minutes(5));
    let s = series.read(id).unwrap().unwrap();
    assert_eq!(s.width, 480);
    // Extended to ten days while it runs: the buckets grow as it goes on.
    state
        .change(
            &admin,
            Op::Extend {
                id,
                end: t0 + ChronoDuration::days(10),
            },
        )
        .unwrap();
    feed(
        t0 + ChronoDuration::days(10) - ChronoDuration::minutes(1),
        ChronoDuration::minutes(20),
    );
    series.flush();
    let s = series.read(id).unwrap().unwrap();
    assert!(s.width > 480, "{}", s.width);
    assert_eq!(s.gpus.len(), 8);
    let per_gpu = MAX_POINTS_PER_BOOKING / 8;
    assert!(per_gpu <= MAX_POINTS_PER_GPU);
    let total: usize = s.gpus.values().map(|m| m.len()).sum();
    assert!(total <= MAX_POINTS_PER_BOOKING, "{total}");
    for m in s.gpus.values() {
        assert!(m.len() <= per_gpu, "{}", m.len());
        assert!(m.keys().all(|i| (0..per_gpu as i64).contains(i)));
        // Every reading still counted, once.
        assert_eq!(m.values().map(|b| b.readings).sum::<u64>(), taken);
    }
}
