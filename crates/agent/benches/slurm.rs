//! gpubook on Slurm against the clock, with the real agent (`--gpus slurm`) and a real
//! slurmctld and slurmd: booking → reservation visible, slot start → the job running (Slurm's
//! record, gpubook's event and the command's first instruction), job end → gpubook's event.
//!
//! Run as root with the test cluster up (`. scripts/slurm-services.sh`):
//! `cargo bench -p gpubook-agent --bench slurm` (about a minute). Prints figures;
//! asserts nothing about speed (see BENCHMARKS.md). Without root or Slurm it says so and stops.

use chrono::{DateTime, Duration as CDuration, Utc};
use gpubook_client::{Connection, Pushed};
use gpubook_core::JobSpec;
use gpubook_proto::{BookRequest, EventKind, GpuChoice, Request, Response, WhenChoice};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bookings made and cancelled for the reservation figure.
const HOLDS: usize = 20;
/// Jobs run, one slot starting every `STAGGER` seconds.
const JOBS: usize = 16;
const STAGGER: i64 = 3;
/// Each job's slot, seconds: at most three overlap on the test node's four GPUs.
const SLOT: i64 = 9;

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn line(what: &str, v: &mut [f64]) {
    let n = v.len();
    println!(
        "  {what:<44} {n:>3}: median {:>7.1} ms, p99 {:>7.1} ms",
        pct(v, 0.5),
        pct(v, 0.99)
    );
}

fn reservation_exists(id: u64) -> bool {
    Command::new("scontrol")
        .args(["show", "reservation", &format!("gpubook-{id}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn book(count: u32, start: DateTime<Utc>, secs: i64, job: Option<JobSpec>) -> Request {
    Request::Book(BookRequest {
        gpus: GpuChoice::Count {
            count,
            min_memory: None,
        },
        when: WhenChoice::At {
            start,
            end: start + CDuration::seconds(secs),
        },
        title: "bench".into(),
        job,
    })
}

fn main() {
    if std::env::args().all(|a| a != "--bench") {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || Command::new("sinfo").arg("--version").output().is_err() {
        println!("slurm bench: needs root and a Slurm cluster (. scripts/slurm-services.sh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "granularity = \"1s\"\n").unwrap();
    let socket = dir.path().join("agent.sock");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
        .args(["serve", "--gpus", "slurm", "--name", "bench"])
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
    let figures = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let conn = loop {
            if let Ok(c) = Connection::unix(&socket, "bench").await {
                break c;
            }
            assert!(Instant::now() < deadline, "agent did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (_, mut events) = conn.subscribe(None, false).await.unwrap();

        // Booking → reservation: the answer comes after Slurm made it; scontrol then shows it.
        let mut answered = Vec::new();
        let mut visible = Vec::new();
        let far = Utc::now() + CDuration::days(2);
        for k in 0..HOLDS {
            let start = far + CDuration::hours(k as i64);
            let t = Instant::now();
            let Response::Booking(b) = conn.request(book(1, start, 1800, None)).await.unwrap()
            else {
                panic!("not booked")
            };
            answered.push(t.elapsed().as_secs_f64() * 1e3);
            while !reservation_exists(b.booking.id.0) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            visible.push(t.elapsed().as_secs_f64() * 1e3);
            conn.request(Request::Cancel(gpubook_proto::CancelRequest {
                id: b.booking.id,
            }))
            .await
            .unwrap();
        }

        // Jobs: each writes when its command starts, then when it ends, and exits.
        let t0 = Utc::now() + CDuration::seconds(3);
        let t0 = t0 - CDuration::nanoseconds(t0.timestamp_subsec_nanos() as i64);
        let mut slots = HashMap::new();
        for k in 0..JOBS {
            let start = t0 + CDuration::seconds(k as i64 * STAGGER);
            let f = out.join(format!("job-{k}"));
            // Runs of 1.00 to 1.99 s, so that the ends fall anywhere between two looks.
            let command = format!(
                "date +%s.%N > {f}.start; sleep 1.{:02}; date +%s.%N > {f}.end",
                (k * 37) % 100,
                f = f.display()
            );
            let job = JobSpec {
                command,
                cwd: Some(out.display().to_string()),
                ..Default::default()
            };
            let Response::Booking(b) = conn.request(book(1, start, SLOT, Some(job))).await.unwrap()
            else {
                panic!("not booked")
            };
            slots.insert(b.booking.id.0, (k, start));
        }
        let mut running_event = Vec::new();
        let mut running_slurm = Vec::new();
        let mut finished_event = Vec::new();
        let until = Instant::now() + Duration::from_secs((JOBS as i64 * STAGGER) as u64 + 60);
        let mut done = 0;
        while done < JOBS && Instant::now() < until {
            let Ok(Some(Pushed::Event(e))) =
                tokio::time::timeout(Duration::from_secs(5), events.recv()).await
            else {
                continue;
            };
            let now = Utc::now();
            let Some(&(k, start)) = slots.get(&e.booking.id.0) else {
                continue;
            };
            let run = e.booking.run.as_ref();
            match e.kind {
                EventKind::JobStarted
                    if run.is_some_and(|r| r.state == gpubook_core::JobState::Running) =>
                {
                    running_event.push((now - start).num_microseconds().unwrap() as f64 / 1e3);
                    if let Some(at) = run.and_then(|r| r.started_at) {
                        running_slurm.push((at - start).num_milliseconds() as f64);
                    }
                }
                EventKind::JobFinished | EventKind::JobFailed | EventKind::JobStopped => {
                    done += 1;
                    let f = out.join(format!("job-{k}.end"));
                    if let Ok(text) = std::fs::read_to_string(&f) {
                        let end: f64 = text.trim().parse().unwrap();
                        let now = now.timestamp_micros() as f64 / 1e6;
                        finished_event.push((now - end) * 1e3);
                    }
                }
                _ => {}
            }
        }
        let mut command = Vec::new();
        for (k, start) in slots.values() {
            let f = out.join(format!("job-{k}.start"));
            if let Ok(text) = std::fs::read_to_string(&f) {
                let secs: f64 = text.trim().parse().unwrap();
                command.push((secs - start.timestamp() as f64) * 1e3);
            }
        }
        [
            answered,
            visible,
            running_slurm,
            running_event,
            command,
            finished_event,
        ]
    });
    let _ = agent.kill();
    let _ = agent.wait();
    let [mut answered, mut visible, mut slurm, mut event, mut command, mut finished] = figures;
    println!("gpubook-agent on Slurm against the clock (real slurmctld/slurmd, release build)");
    line("book → answered (reservation made)", &mut answered);
    line("book → scontrol shows gpubook-<id>", &mut visible);
    line("slot start → Slurm's start time (whole s)", &mut slurm);
    line("slot start → gpubook's job_started (running)", &mut event);
    line("slot start → the command's first instruction", &mut command);
    line("job end → gpubook's job_finished", &mut finished);
}
