//! Agent over its socket: confirmed bookings per second with 32 concurrent clients, the
//! agent's memory idle and under that load, and its CPU use while idle (it must not poll).
//!
//! Run: `cargo bench -p gpubook-agent --bench socket`. Prints figures; asserts nothing about
//! speed (see BENCHMARKS.md).

use gpubook_agent::procs::{cpu_ticks, status_kib};
use gpubook_client::Connection;
use gpubook_proto::{BookRequest, GpuChoice, Request, Response, WhenChoice};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
const PER_CLIENT: usize = 200;

fn main() {
    if std::env::args().all(|a| a != "--bench") {
        // `cargo test` builds and runs benches without --bench: nothing to measure then.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
        .args(["serve", "--gpus", "sim:64", "--name", "bench"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(&socket)
        .stderr(Stdio::null())
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

    // Idle: settle, then measure CPU over 10 s.
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle = status_kib(pid, "VmRSS:").unwrap_or(0);
    let t0 = cpu_ticks(pid).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(10));
    let idle_ticks = cpu_ticks(pid).unwrap_or(0) - t0;
    // SAFETY: sysconf cannot fail for _SC_CLK_TCK.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let idle_cpu_pct = idle_ticks as f64 / hz / 10.0 * 100.0;

    // Load: 32 clients, each on its own GPU, booking consecutive one-hour slots.
    let start = chrono::Utc::now() + chrono::Duration::days(1);
    let start = gpubook_core::time::floor_to(start, chrono::Duration::hours(1));
    let mut latencies: Vec<Duration> = Vec::new();
    let began = Instant::now();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = {
        let peak = peak.clone();
        std::thread::spawn(move || {
            for _ in 0..600 {
                if let Some(r) = status_kib(pid, "VmRSS:") {
                    peak.fetch_max(r, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
                if status_kib(pid, "VmRSS:").is_none() {
                    return;
                }
            }
        })
    };
    let confirmed: usize = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let socket = socket.clone();
            tasks.push(tokio::spawn(async move {
                let conn = Connection::unix(&socket, "bench").await.unwrap();
                let mut lat = Vec::with_capacity(PER_CLIENT);
                let mut ok = 0;
                for k in 0..PER_CLIENT {
                    let s = start + chrono::Duration::hours(k as i64);
                    let req = Request::Book(BookRequest {
                        gpus: GpuChoice::Named {
                            gpus: vec![c.to_string()],
                        },
                        when: WhenChoice::At {
                            start: s,
                            end: s + chrono::Duration::hours(1),
                        },
                        title: format!("bench {c}/{k}"),
                        job: None,
                    });
                    let t = Instant::now();
                    if let Ok(Response::Booking(_)) = conn.request(req).await {
                        ok += 1;
                    }
                    lat.push(t.elapsed());
                }
                (ok, lat)
            }));
        }
        let mut total = 0;
        for t in tasks {
            let (ok, lat) = t.await.unwrap();
            total += ok;
            latencies.extend(lat);
        }
        total
    });
    let elapsed = began.elapsed();
    let rss_load = status_kib(pid, "VmRSS:").unwrap_or(0);
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = watcher.join();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];

    println!("gpubook-agent over its Unix socket (sim:64, SQLite WAL, synchronous=FULL)");
    println!("  clients                      {CLIENTS}");
    println!(
        "  bookings confirmed           {confirmed} of {}",
        CLIENTS * PER_CLIENT
    );
    println!(
        "  confirmed bookings/second    {:.0}",
        confirmed as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  latency per booking          median {:.2} ms, p99 {:.2} ms",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    println!(
        "  memory idle (RSS)            {:.1} MiB",
        rss_idle as f64 / 1024.0
    );
    println!(
        "  memory under load (RSS)      {:.1} MiB (peak {:.1} MiB)",
        rss_load as f64 / 1024.0,
        hwm.max(peak.load(std::sync::atomic::Ordering::Relaxed)) as f64 / 1024.0
    );
    println!("  CPU while idle (10 s)        {idle_cpu_pct:.2} % of one core");
}
