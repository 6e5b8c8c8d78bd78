//! SSH transport figures against a real sshd on 127.0.0.1 (release build, as root: it makes
//! Unix users): connect, authenticate (key file) and handshake with a running agent; a
//! request's round trip over SSH (median and p99); the time to upload and start the agent on a
//! first connect into a fresh account.
//!
//!     cargo bench -p gpubook-client --bench ssh
//!
//! Needs sshd and the OpenSSH tools (scripts/ssh-services.sh).

use gpubook_testkit::sshd;

use gpubook_client::deploy::{self, DeployOptions, Reached};
use gpubook_client::ssh::{Session, SshHost};
use gpubook_proto::{Request, WhoamiRequest};
use sshd::{ClientHome, Sshd, User};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const CONNECTS: usize = 20;
const REQUESTS: usize = 2000;
const DEPLOYS: usize = 3;

fn main() {
    if !sshd::available("ssh bench") {
        std::process::exit(1);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run() {
    // A root-run agent with a shared socket, as a system install has.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let built = sshd::agent_binary();
    let bin = sshd::runnable_copy(&built, dir.path());
    let socket = dir.path().join("run/agent.sock");
    let agent = gpubook_agent::server::bind(
        gpubook_agent::AgentConfig {
            state_dir: dir.path().join("state"),
            socket: socket.clone(),
            gpus: "sim:4".parse().unwrap(),
            policy: None,
            server_name: "bench".into(),
            shared: true,
            sample_interval: Duration::from_secs(1),
        },
        std::sync::Arc::new(gpubook_agent::clock::SystemClock),
    )
    .await
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent_task = tokio::spawn(agent.run(async move {
        let _ = stopped.await;
    }));
    let server = Sshd::start("");
    let home = ClientHome::new();
    home.trust(&server);
    let user = User::ensure("gpb-ssh-bench");
    user.authorize(&home.key.with_extension("pub"));
    home.host("lab", &server, &user.name, "");
    let opts = home.options(None);
    let system = DeployOptions {
        system_socket: Some(socket.display().to_string()),
        system_binary: Some(bin.display().to_string()),
        ..DeployOptions::default()
    };
    println!("gpubook SSH transport on loopback (release build, ed25519 key file, OpenSSH sshd)");

    // Resolving the name (`ssh -G`), SSH alone, then SSH + agent + handshake.
    let mut resolve = Vec::new();
    for _ in 0..CONNECTS {
        let t = Instant::now();
        SshHost::resolve_with("lab", &opts.env).unwrap();
        resolve.push(t.elapsed());
    }
    resolve.sort();
    println!(
        "resolve the name with `ssh -G`: median {} ({CONNECTS} runs)",
        ms(pct(&resolve, 0.5))
    );
    let target = SshHost::resolve_with("lab", &opts.env).unwrap();
    let mut ssh_only = Vec::new();
    let mut full = Vec::new();
    for _ in 0..CONNECTS {
        let t = Instant::now();
        let s = Session::connect(&target, &opts).await.unwrap();
        ssh_only.push(t.elapsed());
        drop(s);
        let t = Instant::now();
        let (conn, reached) = deploy::connect_agent_with("lab", &opts, &system, "bench")
            .await
            .unwrap();
        full.push(t.elapsed());
        assert_eq!(reached, Reached::System { streamlocal: true });
        drop(conn);
    }
    ssh_only.sort();
    full.sort();
    println!(
        "connect + authenticate (no agent): median {}, max {} ({CONNECTS} runs)",
        ms(pct(&ssh_only, 0.5)),
        ms(*ssh_only.last().unwrap())
    );
    println!(
        "connect + authenticate + system agent (direct-streamlocal) + handshake: median {}, max {} ({CONNECTS} runs; includes `ssh -G`)",
        ms(pct(&full, 0.5)),
        ms(*full.last().unwrap())
    );

    // OpenSSH's own client for reference: connect, authenticate, run `true`.
    let mut openssh = Vec::new();
    for _ in 0..CONNECTS {
        let t = Instant::now();
        let ok = std::process::Command::new("ssh")
            .arg("-F")
            .arg(home.ssh("config"))
            .arg("-i")
            .arg(&home.key)
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                home.ssh("known_hosts").display()
            ))
            .args(["-o", "BatchMode=yes", "lab", "true"])
            .stdin(std::process::Stdio::null())
            .status()
            .unwrap();
        openssh.push(t.elapsed());
        assert!(ok.success(), "OpenSSH's ssh failed");
    }
    openssh.sort();
    println!(
        "for reference, OpenSSH's `ssh lab true` (connect, authenticate, exec): median {} ({CONNECTS} runs)",
        ms(pct(&openssh, 0.5))
    );

    // Round trips on one connection.
    let (conn, _) = deploy::connect_agent_with("lab", &opts, &system, "bench")
        .await
        .unwrap();
    for _ in 0..50 {
        conn.request(Request::Whoami(WhoamiRequest {}))
            .await
            .unwrap();
    }
    let mut rtt = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let t = Instant::now();
        conn.request(Request::Whoami(WhoamiRequest {}))
            .await
            .unwrap();
        rtt.push(t.elapsed());
    }
    rtt.sort();
    println!(
        "request round trip over SSH (whoami): median {}, p99 {} ({REQUESTS} requests)",
        ms(pct(&rtt, 0.5)),
        ms(pct(&rtt, 0.99))
    );
    drop(conn);

    // First connect into a fresh account: upload, verify, start, wait, bridge, handshake.
    let size = std::fs::metadata(&built).unwrap().len();
    let mut firsts = Vec::new();
    let mut running = Vec::new();
    for _ in 0..DEPLOYS {
        let fresh = User::fresh("gpb-ssh-benchnew");
        fresh.authorize(&home.key.with_extension("pub"));
        let spec = format!("{}@127.0.0.1:{}", fresh.name, server.port);
        let personal = DeployOptions {
            binary: Some(built.clone()),
            gpus: Some("sim:4".into()),
            system_socket: Some("/nonexistent/gpubook-bench/agent.sock".into()),
            ..DeployOptions::default()
        };
        let t = Instant::now();
        let (conn, reached) = deploy::connect_agent_with(&spec, &opts, &personal, "bench")
            .await
            .unwrap();
        firsts.push(t.elapsed());
        assert!(matches!(reached, Reached::Started { uploaded: true, .. }));
        drop(conn);
        if running.is_empty() {
            // Later connects find the personal agent running: one exec channel.
            for _ in 0..CONNECTS {
                let t = Instant::now();
                let (conn, reached) = deploy::connect_agent_with(&spec, &opts, &personal, "bench")
                    .await
                    .unwrap();
                running.push(t.elapsed());
                assert_eq!(reached, Reached::Running);
                drop(conn);
            }
        }
        fresh.kill_all();
    }
    running.sort();
    println!(
        "connect + authenticate + running personal agent (bridge on an exec channel) + handshake: median {}, max {} ({CONNECTS} runs)",
        ms(pct(&running, 0.5)),
        ms(*running.last().unwrap())
    );
    firsts.sort();
    println!(
        "first connect into a fresh account (upload {:.1} MB, sha256 check, start, socket, handshake): median {}, max {} ({DEPLOYS} runs)",
        size as f64 / 1e6,
        ms(pct(&firsts, 0.5)),
        ms(*firsts.last().unwrap())
    );
    let _ = stop.send(());
    let _ = agent_task.await;
}
