//! The agent under abuse: one uid holding as many idle connections as it may, other uids
//! holding 500 more, and a client flooding requests whose answers it never reads; meanwhile an
//! ordinary client's `whoami` latency (p50, p99) and the agent's RSS.
//!
//! Run as root: `cargo bench -p gpubook-agent --bench abuse` (it creates the users
//! gpb-bench-hog and gpb-bench-0 … gpb-bench-9). Prints figures; asserts nothing about speed
//! (see BENCHMARKS.md).

use gpubook_agent::procs::status_kib;
use gpubook_client::Connection;
use gpubook_proto::{Request, WhoamiRequest};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Connections of the one uid that holds as many as it may (the agent's per-uid cap).
const HOG: usize = gpubook_agent::server::MAX_CONNECTIONS_PER_UID;
/// Other uids, and connections each: 500 in all.
const OTHERS: usize = 10;
const PER_OTHER: usize = 50;
/// `whoami` round trips measured.
const SAMPLES: usize = 2000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--hold") {
        return hold(args[i + 1].parse().unwrap(), &args[i + 2]);
    }
    if args.iter().all(|a| a != "--bench") {
        // `cargo test` builds and runs benches without --bench: nothing to measure then.
        return;
    }
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } != 0 {
        println!("abuse bench: skipped, it needs root (users hold the connections)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let socket = dir.path().join("run").join("agent.sock");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
        .args(["serve", "--gpus", "sim:8", "--name", "bench", "--shared"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(&socket)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = agent.id();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let conn = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(c) = Connection::unix(&socket, "bench").await {
                break c;
            }
            assert!(Instant::now() < deadline, "agent did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let whoami = |n: usize| {
        rt.block_on(async {
            let mut took = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                conn.request(Request::Whoami(WhoamiRequest {}))
                    .await
                    .expect("whoami");
                took.push(t.elapsed());
            }
            took.sort();
            took
        })
    };
    let quiet = whoami(SAMPLES);
    let rss_quiet = status_kib(pid, "VmRSS:").unwrap_or(0);

    // The holders.
    let mut holders: Vec<Child> = Vec::new();
    holders.push(holder(&user("gpb-bench-hog"), HOG, &socket));
    for i in 0..OTHERS {
        holders.push(holder(&user(&format!("gpb-bench-{i}")), PER_OTHER, &socket));
    }
    for h in &mut holders {
        // Each says "ready" once its connections are made.
        let mut ready = [0u8; 1];
        h.stdout.as_mut().unwrap().read_exact(&mut ready).unwrap();
    }
    // The flooder: whoami after whoami, never reading an answer; cut off, it comes back.
    let flood_socket = socket.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cut_off = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flooder = {
        let (stop, cut_off) = (stop.clone(), cut_off.clone());
        std::thread::spawn(move || {
            let hello = br#"{"type":"hello","major":1,"minor":2,"client":"flood"}"#;
            let req = br#"{"type":"request","id":1,"body":{"type":"whoami"}}"#;
            let mut bytes = frame(hello);
            for _ in 0..20_000 {
                bytes.extend(frame(req));
            }
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut s) = std::os::unix::net::UnixStream::connect(&flood_socket) else {
                    continue;
                };
                if s.write_all(&bytes).is_err() {
                    cut_off.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let loaded = whoami(SAMPLES);
    let rss_flooded = status_kib(pid, "VmRSS:").unwrap_or(0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = flooder.join();
    let rss_loaded = status_kib(pid, "VmRSS:").unwrap_or(0).max(rss_flooded);
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);

    let pct = |v: &[Duration], p: f64| {
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0
    };
    println!("abuse bench ({SAMPLES} whoami round trips each)");
    println!(
        "  quiet agent:       whoami p50 {:.2} ms, p99 {:.2} ms; RSS {:.1} MiB",
        pct(&quiet, 0.5),
        pct(&quiet, 0.99),
        rss_quiet as f64 / 1024.0
    );
    println!(
        "  under abuse:       whoami p50 {:.2} ms, p99 {:.2} ms; RSS {:.1} MiB; {open} open \
         descriptors ({HOG} idle from one uid, {} from {OTHERS} others, a flooder that \
         never reads, cut off {} times)",
        pct(&loaded, 0.5),
        pct(&loaded, 0.99),
        rss_loaded as f64 / 1024.0,
        OTHERS * PER_OTHER,
        cut_off.load(std::sync::atomic::Ordering::Relaxed)
    );
    for mut h in holders {
        let _ = h.kill();
        let _ = h.wait();
    }
    let _ = agent.kill();
    let _ = agent.wait();
}

/// One frame as bytes.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// The uid and gid of user `name`, created if missing.
fn user(name: &str) -> (u32, u32) {
    let id = |flag: &str| {
        Command::new("id")
            .args([flag, name])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
    };
    if id("-u").is_none() {
        let _ = Command::new("useradd").args(["-M", name]).status();
    }
    (id("-u").expect("the user"), id("-g").expect("the group"))
}

/// This program again, as `who`, holding `n` idle connections to `socket`.
fn holder((uid, gid): &(u32, u32), n: usize, socket: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .arg("--hold")
        .arg(n.to_string())
        .arg(socket)
        .uid(*uid)
        .gid(*gid)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The holder: `n` connections that say hello and then nothing; "ready" on stdout; holds them
/// until stdin closes.
fn hold(n: usize, socket: &str) {
    let hello = frame(br#"{"type":"hello","major":1,"minor":2,"client":"hold"}"#);
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
        s.write_all(&hello).unwrap();
        held.push(s);
    }
    std::io::stdout().write_all(b"r").unwrap();
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}
