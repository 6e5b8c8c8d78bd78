//! Jobs against the clock: from a slot's start to the job's exec, and from a slot's end to the
//! job's processes being gone, with the real agent binary and real processes.
//!
//! Run: `cargo bench -p gpubook-agent --bench jobs` (about a minute). Prints figures; asserts
//! nothing about speed (see BENCHMARKS.md).

use chrono::{DateTime, Duration as CDuration, Utc};
use gpubook_client::{Connection, Pushed};
use gpubook_core::JobSpec;
use gpubook_proto::{BookRequest, EventKind, GpuChoice, Request, Response, WhenChoice};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STARTS: usize = 60;
const ENDS: usize = 20;
const GPUS: usize = 8;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn main() {
    if std::env::args().all(|a| a != "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "granularity = \"1s\"\n").unwrap();
    let socket = dir.path().join("agent.sock");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
        .args(["serve", "--gpus", &format!("sim:{GPUS}"), "--name", "bench"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(&socket)
        .arg("--policy")
        .arg(&policy)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (starts, mut ends, mut execs) = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        let conn = loop {
            if let Ok(c) = Connection::unix(&socket, "bench").await {
                break c;
            }
            assert!(Instant::now() < deadline, "agent did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (_, mut events) = conn.subscribe(None, false).await.unwrap();
        let book = |gpu: usize, start: DateTime<Utc>, secs: i64, command: String| {
            Request::Book(BookRequest {
                gpus: GpuChoice::Named {
                    gpus: vec![gpu.to_string()],
                },
                when: WhenChoice::At {
                    start,
                    end: start + CDuration::seconds(secs),
                },
                title: "bench".into(),
                job: Some(JobSpec {
                    command,
                    cwd: Some("/tmp".into()),
                    env: Default::default(),
                    end_signal: None,
                    grace_secs: Some(5),
                    keep_slot: true,
                    ..Default::default()
                }),
            })
        };
        // Starts: two slots a second, on alternating GPUs, each job writes its exec time.
        let t0 = Utc::now() + CDuration::seconds(3);
        let t0 = t0 - CDuration::nanoseconds(t0.timestamp_subsec_nanos() as i64);
        let mut slot_start = HashMap::new();
        for k in 0..STARTS {
            let start = t0 + CDuration::seconds((k / 2) as i64);
            let f = out.join(format!("start-{k}"));
            let cmd = format!("date +%s.%N > {}", f.display());
            let gpu = k % GPUS;
            match conn.request(book(gpu, start, 2, cmd)).await.unwrap() {
                Response::Booking(_) => {}
                other => panic!("{other:?}"),
            }
            slot_start.insert(k, start);
        }
        // Ends: one-second slots whose job sleeps until it gets SIGTERM.
        let e0 = t0 + CDuration::seconds((STARTS / 2) as i64 + 3);
        let mut slot_end: HashMap<u64, DateTime<Utc>> = HashMap::new();
        for k in 0..ENDS {
            let start = e0 + CDuration::seconds(k as i64);
            let gpu = k % GPUS;
            if let Response::Booking(b) = conn
                .request(book(gpu, start, 1, "exec sleep 100".into()))
                .await
                .unwrap()
            {
                slot_end.insert(b.booking.id.0, b.booking.interval.end);
            }
        }
        // Collect the ends' pids as their jobs start; watch each pid vanish.
        let mut gone: Vec<f64> = Vec::new();
        let mut watchers = Vec::new();
        let finish = Instant::now() + Duration::from_secs(STARTS as u64 / 2 + ENDS as u64 + 30);
        let mut exec_ms: Vec<f64> = Vec::new();
        while watchers.len() < ENDS && Instant::now() < finish {
            let Ok(Some(Pushed::Event(e))) =
                tokio::time::timeout(Duration::from_secs(5), events.recv()).await
            else {
                continue;
            };
            if e.kind != EventKind::JobStarted {
                continue;
            }
            let Some(end) = slot_end.get(&e.booking.id.0).copied() else {
                // A start slot: when the agent had exec'd the job's shell.
                if let Some(at) = e.booking.run.as_ref().and_then(|r| r.started_at) {
                    let ms = (at - e.booking.interval.start)
                        .num_microseconds()
                        .unwrap_or(0);
                    exec_ms.push(ms as f64 / 1e3);
                }
                continue;
            };
            let pid = e.booking.run.as_ref().and_then(|r| r.pid).unwrap();
            watchers.push(std::thread::spawn(move || {
                while std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    std::thread::sleep(Duration::from_micros(500));
                }
                (Utc::now() - end).num_microseconds().unwrap() as f64 / 1e3
            }));
        }
        for w in watchers {
            gone.push(w.join().unwrap());
        }
        let mut starts = Vec::new();
        for (k, start) in slot_start {
            let f = out.join(format!("start-{k}"));
            if let Ok(text) = std::fs::read_to_string(&f) {
                let secs: f64 = text.trim().parse().unwrap();
                let exec = secs - start.timestamp() as f64;
                starts.push(exec * 1e3);
            }
        }
        (starts, gone, exec_ms)
    });
    let _ = agent.kill();
    let _ = agent.wait();
    let mut s = starts.clone();
    println!("gpubook-agent jobs against the clock (sim:{GPUS}, release build)");
    println!(
        "  slot start → shell exec'd  {} slots: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        execs.len(),
        pct(&mut execs, 0.5),
        pct(&mut execs, 0.99),
        execs.iter().cloned().fold(f64::MIN, f64::max)
    );
    println!(
        "  slot start → command runs  {} slots: median {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         (after the owner's login shell read its profile)",
        s.len(),
        pct(&mut s, 0.5),
        pct(&mut s, 0.99),
        s.iter().cloned().fold(f64::MIN, f64::max)
    );
    println!(
        "  slot end → processes gone  {} jobs exiting on SIGTERM: median {:.1} ms, max {:.1} ms",
        ends.len(),
        pct(&mut ends, 0.5),
        ends.iter().cloned().fold(f64::MIN, f64::max)
    );
}
