//! Reading and watching the GPUs: the cost of one reading of the recorded H200 trace
//! (`ReplayReader::read`), of 8 simulated GPUs (with and without a processes file), of the
//! watch's work on one reading of 8 GPUs under an active booking, and the agent's CPU and
//! memory while it reads 8 simulated GPUs once a second with that booking active.
//!
//! Run: `cargo bench -p gpubook-agent --bench readers` (`GPUBOOK_BENCH_SECS=N` to watch the
//! agent for N seconds instead of 30). Prints figures; asserts nothing about speed.

use chrono::{Duration as ChronoDuration, Utc};
use gpubook_agent::clock::SystemClock;
use gpubook_agent::gpu::replay::ReplayReader;
use gpubook_agent::gpu::sim::{SimReader, SIM_PROCESSES_FILE};
use gpubook_agent::gpu::GpuReader;
use gpubook_agent::procs::{cpu_ticks, status_kib};
use gpubook_agent::state::State;
use gpubook_agent::store::Store;
use gpubook_agent::watch::Watch;
use gpubook_client::Connection;
use gpubook_core::time::whole_seconds;
use gpubook_core::{Actor, Gpu, GpuSelection, Interval, Op, Policy, Role, When};
use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TRACE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/nvml/h200/nvml-trace.jsonl"
);
const SERVER: &str = "bench";
const GPUS: u32 = 8;

/// Mean, median and p99 of `f` over `n` calls (after `n / 10` warm-up calls), in µs.
fn time(n: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    for _ in 0..n / 10 {
        f();
    }
    let mut each = Vec::with_capacity(n);
    let began = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f();
        each.push(t.elapsed());
    }
    let mean = began.elapsed().as_secs_f64() / n as f64 * 1e6;
    each.sort();
    let at = |p: f64| each[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1e6;
    (mean, at(0.5), at(0.99))
}

fn print_time(what: &str, (mean, median, p99): (f64, f64, f64)) {
    println!("  {what:<44} mean {mean:8.2} µs, median {median:8.2} µs, p99 {p99:8.2} µs");
}

/// The processes file with one process of `user` on each of the 8 GPUs.
fn processes_json(user: &str) -> String {
    let procs: Vec<String> = (0..GPUS)
        .map(|i| {
            format!(
                r#"{{"gpu": {i}, "pid": {}, "user": "{user}", "used_bytes": {}, "util": 90}}"#,
                10_000 + i,
                (10 + u64::from(i)) << 30
            )
        })
        .collect();
    format!("[{}]", procs.join(",\n"))
}

/// Books every GPU of `inventory` for alice, from a second ago for an hour, in `state_dir`.
fn seed_alice(state_dir: &Path, inventory: Vec<Gpu>) {
    std::fs::create_dir_all(state_dir).unwrap();
    let store = Store::open(&state_dir.join("agent.db")).unwrap();
    let policy = Policy {
        granularity_secs: 1,
        ..Policy::default()
    };
    let state = State::load(store, inventory.clone(), policy, Arc::new(SystemClock)).unwrap();
    let start = whole_seconds(Utc::now()) - ChronoDuration::seconds(1);
    let op = Op::Book {
        gpus: GpuSelection::Named(inventory.into_iter().map(|g| g.uuid).collect()),
        when: When::At(Interval {
            start,
            end: start + ChronoDuration::hours(1),
        }),
        title: "bench".into(),
        job: None,
    };
    let alice = Actor {
        user: "alice".into(),
        role: Role::User,
    };
    state
        .decide(|plan, _| plan.apply(&alice, op, start).unwrap())
        .unwrap();
}

fn in_process() {
    println!("One reading, in process");
    let open = time(50, || {
        black_box(ReplayReader::open(Path::new(TRACE), SERVER).unwrap());
    });
    print_time("open the H200 trace (150 readings)", open);
    let mut replay = ReplayReader::open(Path::new(TRACE), SERVER).unwrap();
    print_time(
        "ReplayReader::read, H200 trace (1 GPU)",
        time(200_000, || {
            black_box(replay.read().unwrap());
        }),
    );

    let mut sim = SimReader::new(GPUS, SERVER);
    print_time(
        "SimReader::read, 8 GPUs, made-up load",
        time(200_000, || {
            black_box(sim.read().unwrap());
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(SIM_PROCESSES_FILE);
    std::fs::write(&file, processes_json("alice")).unwrap();
    let mut sim = SimReader::new(GPUS, SERVER).with_processes_file(file);
    print_time(
        "SimReader::read, 8 GPUs, processes file",
        time(200_000, || {
            black_box(sim.read().unwrap());
        }),
    );

    // The watch on one reading of 8 GPUs with alice's booking of all 8 active: history,
    // usage and the intruder check (her own processes: nothing to write).
    let state_dir = dir.path().join("state");
    let inventory = sim.inventory();
    seed_alice(&state_dir, inventory.clone());
    let store = Store::open(&state_dir.join("agent.db")).unwrap();
    let state =
        Arc::new(State::load(store, inventory, Policy::default(), Arc::new(SystemClock)).unwrap());
    state.tick().unwrap();
    let watch = Watch::new(state, Duration::from_secs(1), false);
    let reading = sim.read().unwrap();
    let mut at = reading.at;
    print_time(
        "Watch::observe, 8 GPUs, 1 active booking",
        time(100_000, || {
            // A second later each time, as the sampler would read.
            at += ChronoDuration::seconds(1);
            let r = gpubook_proto::Readings {
                at,
                gpus: reading.gpus.clone(),
            };
            black_box(watch.observe(&r));
        }),
    );
}

fn agent_process(secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    seed_alice(&state_dir, SimReader::new(GPUS, SERVER).inventory());
    std::fs::write(state_dir.join(SIM_PROCESSES_FILE), processes_json("alice")).unwrap();
    let socket = dir.path().join("agent.sock");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
        .args([
            "serve",
            "--gpus",
            "sim:8",
            "--sample-secs",
            "1",
            "--name",
            SERVER,
        ])
        .arg("--state-dir")
        .arg(&state_dir)
        .arg("--socket")
        .arg(&socket)
        .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    let pid = agent.id();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Connection::unix(&socket, "bench").await.is_err() {
            assert!(Instant::now() < deadline, "agent did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = status_kib(pid, "VmRSS:").unwrap_or(0);
    let t0 = cpu_ticks(pid).unwrap_or(0);
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let ticks = cpu_ticks(pid).unwrap_or(0) - t0;
    let elapsed = began.elapsed().as_secs_f64();
    let rss_after = status_kib(pid, "VmRSS:").unwrap_or(0);
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    if let Some(status) = agent.try_wait().unwrap() {
        panic!(
            "the agent exited ({status}) while being measured:\n{}",
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
        );
    }
    let _ = agent.kill();
    let _ = agent.wait();
    // SAFETY: sysconf cannot fail for _SC_CLK_TCK.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    println!(
        "gpubook-agent reading 8 simulated GPUs once a second, alice's booking of all 8 \
         active, one process of hers on each (release build)"
    );
    println!(
        "  CPU over {elapsed:.0} s                              {:.2} % of one core \
         ({ticks} ticks at {hz} Hz)",
        ticks as f64 / hz / elapsed * 100.0
    );
    println!(
        "  memory (RSS)                               {:.1} MiB at the start, {:.1} MiB \
         at the end (peak {:.1} MiB)",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
}

fn main() {
    if std::env::args().all(|a| a != "--bench") {
        // `cargo test` builds and runs benches without --bench: nothing to measure then.
        return;
    }
    let secs = std::env::var("GPUBOOK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    in_process();
    agent_process(secs);
}
