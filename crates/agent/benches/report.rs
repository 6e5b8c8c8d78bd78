//! How long a report takes over a busy lab's history: 10,000 bookings of 1 to 12 hours on 16
//! GPUs by 20 people, back to back over about seven months from 2025-01-06, with their events
//! (made, ended, usage; some released early, cancelled or intruded on): 30,900 events. Times the pure computation
//! (`gpubook_core::report::compute`) and the agent's answer over its socket, which also reads
//! every stored event once.
//!
//! Run: `cargo bench -p gpubook-agent --bench report`. Prints figures; asserts nothing about
//! speed (see BENCHMARKS.md).

use chrono::{DateTime, Duration, Utc};
use gpubook_agent::store::Store;
use gpubook_client::Connection;
use gpubook_core::report::{self, Fact, FactKind};
use gpubook_core::{
    Booking, BookingId, BookingState, Change, ChangeKind, Gpu, GpuUuid, Interval, Note, Usage,
};
use gpubook_proto::{ReportRequest, Request, Response};
use std::process::{Command, Stdio};
use std::time::{Duration as Wait, Instant};

const BOOKINGS: u64 = 10_000;
const GPUS: u64 = 16;
const RUNS: usize = 9;

fn uuid(i: u64) -> GpuUuid {
    GpuUuid(format!("SIM-bench-{i}"))
}

/// Changes with the time each happened.
type Timed = Vec<(DateTime<Utc>, Change)>;

/// The history's bookings and their changes, in order; the facts the events hold.
fn year(t0: DateTime<Utc>) -> (Vec<Booking>, Timed, Vec<Fact>) {
    let (mut bookings, mut changes, mut facts) = (Vec::new(), Vec::new(), Vec::new());
    // Each GPU's bookings follow one another, with gaps of 0 to 2 hours.
    let mut next = vec![t0; GPUS as usize];
    for i in 0..BOOKINGS {
        let g = i % GPUS;
        let hours = 1 + (i * 7 % 12) as i64;
        let start = next[g as usize];
        next[g as usize] = start + Duration::hours(hours + (i % 3) as i64);
        let interval = Interval::new(start, start + Duration::hours(hours)).unwrap();
        let mut b = Booking {
            id: BookingId(i + 1),
            owner: format!("user{}", i % 20),
            gpus: vec![uuid(g)],
            interval,
            title: format!("run {i}"),
            state: BookingState::Confirmed,
            job: None,
            asap: None,
            pending_reason: None,
            pending_since: None,
            created_at: start - Duration::days(2),
            revision: 1,
            warned_start: true,
            warned_end: true,
            run: None,
            usage: None,
        };
        let change = |kind, b: &Booking, before, note| Change {
            kind,
            booking: b.clone(),
            before,
            note,
        };
        changes.push((b.created_at, change(ChangeKind::Created, &b, None, None)));
        let id = b.id;
        let mut fact = |at, what| {
            facts.push(Fact {
                booking: id,
                at,
                what,
            })
        };
        if i % 20 == 0 {
            b.state = BookingState::Cancelled;
            let at = start - Duration::hours((i % 48) as i64);
            fact(at, FactKind::Cancelled);
            changes.push((at, change(ChangeKind::Cancelled, &b, None, None)));
            bookings.push(b);
            continue;
        }
        b.state = BookingState::Ended;
        if i % 10 == 1 {
            let before = b.interval;
            b.interval.end = start + Duration::minutes(30);
            fact(b.interval.end, FactKind::Released { before });
            changes.push((
                b.interval.end,
                change(ChangeKind::Released, &b, Some(before), None),
            ));
        }
        if i % 25 == 2 {
            let note = Note::Intruder {
                gpu: uuid(g),
                pid: 1000 + i as u32,
                user: Some(format!("user{}", (i + 1) % 20)),
                used_bytes: 1 << 28,
                stopped: false,
            };
            fact(start, FactKind::Note(note.clone()));
            changes.push((start, change(ChangeKind::Intruder, &b, None, Some(note))));
        }
        let secs = b.interval.duration().num_seconds();
        b.usage = Some(Usage {
            mean_util: 50.0,
            peak_memory: 1 << 30,
            gpu_seconds_used: secs * (i % 5) as i64 / 4,
            gpu_seconds_booked: secs,
            samples: secs as u64 / 5,
        });
        let end = b.interval.end;
        changes.push((end, change(ChangeKind::Ended, &b, None, None)));
        changes.push((end, change(ChangeKind::UsageRecorded, &b, None, None)));
        bookings.push(b);
    }
    changes.sort_by_key(|(at, _)| *at);
    (bookings, changes, facts)
}

fn median(mut v: Vec<Wait>) -> Wait {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().all(|a| a != "--bench") {
        // `cargo test` builds and runs benches without --bench: nothing to measure then.
        return;
    }
    let t0: DateTime<Utc> = "2025-01-06T00:00:00Z".parse().unwrap();
    let (bookings, changes, facts) = year(t0);
    let gpus: Vec<Gpu> = (0..GPUS)
        .map(|i| Gpu {
            uuid: uuid(i),
            index: i as u32,
            name: format!("Simulated GPU {i}"),
            memory_total: 80 << 30,
            server: "bench".into(),
            simulated: true,
            node: None,
        })
        .collect();
    let windows = [("one week", 7), ("30 days", 30), ("366 days", 366)];
    println!("{} bookings, {} events", bookings.len(), changes.len());
    for (name, days) in windows {
        let w = report::window(t0, t0 + Duration::days(days)).unwrap();
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let began = Instant::now();
            std::hint::black_box(report::compute(&bookings, &facts, &gpus, w, None));
            times.push(began.elapsed());
        }
        println!("compute, {name}: median {:?}", median(times));
    }

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut store = Store::open(&state.join("agent.db")).unwrap();
    let mut tx = store.begin().unwrap();
    for (at, c) in &changes {
        tx.record(std::slice::from_ref(c), None, *at).unwrap();
    }
    tx.commit().unwrap();
    drop(store);
    let socket = dir.path().join("agent.sock");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
        .args(["serve", "--gpus", "sim:16", "--name", "bench"])
        .arg("--state-dir")
        .arg(&state)
        .arg("--socket")
        .arg(&socket)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Wait::from_secs(60);
        let conn = loop {
            match Connection::unix(&socket, "bench").await {
                Ok(c) => break c,
                Err(_) => assert!(Instant::now() < deadline, "agent did not start"),
            }
            tokio::time::sleep(Wait::from_millis(50)).await;
        };
        for (name, days) in windows {
            let req = ReportRequest {
                from: t0,
                to: t0 + Duration::days(days),
            };
            let mut times = Vec::new();
            let mut users = 0;
            for _ in 0..RUNS {
                let began = Instant::now();
                let resp = conn.request(Request::Report(req.clone())).await.unwrap();
                times.push(began.elapsed());
                let Response::Report(r) = resp else {
                    panic!("unexpected answer {resp:?}")
                };
                users = r.report.users.len();
            }
            println!(
                "agent over its socket, {name}: median {:?} ({users} users)",
                median(times)
            );
        }
    });
    let _ = agent.kill();
    let _ = agent.wait();
}
