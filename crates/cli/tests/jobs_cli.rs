//! Jobs from the command line, as real non-root users against a shared agent run by root:
//! the job's log is its owner's (and the admins') alone, both as a file and through
//! `gpubook logs`; `gpubook run` streams the log and exits with the job's status; and an end
//! signal that is not a signal is refused when booking.
//!
//! Needs root (to create users and to run jobs as them); CI runs as root and sets
//! GPUBOOK_REQUIRE_ROOT_TESTS=1 so these cannot silently skip there.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Owns the jobs.
const JOBBER: &str = "gpb-jobber";
/// Another non-root user.
const OTHER: &str = "gpb-other";

fn root_or_skip(test: &str) -> bool {
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("GPUBOOK_REQUIRE_ROOT_TESTS").is_none(),
        "GPUBOOK_REQUIRE_ROOT_TESTS is set but {test} does not run as root"
    );
    eprintln!("skipped {test}: it creates Unix users and runs jobs as them, which needs root");
    false
}

/// A real user: (uid, gid).
type Ids = (u32, u32);

/// Serialises user creation within this test binary (useradd locks /etc/passwd).
static USERS: Mutex<()> = Mutex::new(());

fn passwd(name: &str) -> Option<Vec<String>> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .expect("run getent");
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(':')
            .map(str::to_string)
            .collect()
    })
}

/// The user `name`, with a home and /bin/bash, created if missing and reused if not.
fn ensure_user(name: &str) -> Ids {
    let _one_at_a_time = USERS.lock().unwrap_or_else(|p| p.into_inner());
    let mut tries = 0;
    while passwd(name).is_none() {
        let out = Command::new("useradd")
            .args(["-m", "-s", "/bin/bash", name])
            .output()
            .expect("run useradd");
        if out.status.success() {
            break;
        }
        // Another process may hold the passwd lock, or have created the user meanwhile.
        tries += 1;
        assert!(
            tries < 20,
            "useradd {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let f = passwd(name).expect("the user exists now");
    let ids: Ids = (f[2].parse().unwrap(), f[3].parse().unwrap());
    assert_ne!(ids.0, 0, "{name} must not be root");
    let home = Path::new(&f[5]);
    if !home.is_dir() {
        std::fs::create_dir_all(home).unwrap();
        std::os::unix::fs::chown(home, Some(ids.0), Some(ids.1)).unwrap();
    }
    if f[6] != "/bin/bash" {
        let out = Command::new("usermod")
            .args(["-s", "/bin/bash", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "usermod -s /bin/bash {name} failed");
    }
    ids
}

/// Whether everyone may traverse to `path` and run it.
fn others_can_run(path: &Path) -> bool {
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode()).ok();
    if mode(path).is_none_or(|m| m & 0o005 != 0o005) {
        return false;
    }
    path.ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
        .all(|p| mode(p).is_some_and(|m| m & 0o001 != 0))
}

/// The agent as root (system mode, shared socket, a one-second grid), in this process, in a
/// directory every user may traverse. Stopped on drop.
struct Lab {
    /// Holds the state, the socket and the CLI.
    _dir: tempfile::TempDir,
    /// The agent's socket.
    socket: PathBuf,
    /// The CLI, where every user can run it.
    cli: PathBuf,
    /// Stops the agent.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The agent's runtime thread.
    agent: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.agent.take() {
            let _ = t.join();
        }
    }
}

impl Lab {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let built = PathBuf::from(env!("CARGO_BIN_EXE_gpubook"));
        let cli = if others_can_run(&built) {
            built
        } else {
            let copy = dir.path().join("gpubook");
            std::fs::copy(&built, &copy).unwrap();
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
            copy
        };
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, "granularity = \"1s\"\n").unwrap();
        let socket = dir.path().join("run").join("agent.sock");
        let config = gpubook_agent::AgentConfig {
            state_dir: dir.path().join("state"),
            socket: socket.clone(),
            gpus: "sim:2".parse().unwrap(),
            policy: Some(policy),
            server_name: "lab-test".into(),
            shared: true,
            sample_interval: Duration::from_secs(1),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let agent = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let clock = std::sync::Arc::new(gpubook_agent::clock::SystemClock);
                let agent = gpubook_agent::server::bind(config, clock).await.unwrap();
                agent
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let lab = Lab {
            _dir: dir,
            socket,
            cli,
            stop: Some(stop),
            agent: Some(agent),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !lab.gpubook(None, &["whoami"]).status.success() {
            assert!(Instant::now() < deadline, "the agent did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        lab
    }

    /// Runs the CLI as `user`, or as root.
    fn gpubook(&self, user: Option<Ids>, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.cli);
        cmd.arg("--server")
            .arg(format!("unix:{}", self.socket.display()))
            .args(args)
            .env_remove("GPUBOOK_SERVER")
            .env("TZ", "UTC")
            .current_dir("/");
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        cmd.output().expect("run gpubook")
    }
}

/// Runs `program args` as `user`.
fn run_as(user: Ids, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir("/")
        .uid(user.0)
        .gid(user.1)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(bytes: &[u8], o: &Output) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// Booking `id` as `user` lists it (past ones included).
fn listed(lab: &Lab, user: Option<Ids>, id: u64) -> serde_json::Value {
    let o = lab.gpubook(user, &["--json", "ls", "--past"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = json(&o.stdout, &o);
    v["bookings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("booking {id} is not listed: {}", text(&o)))
}

#[test]
fn a_jobs_log_is_for_its_owner_and_the_admins_only() {
    if !root_or_skip("a_jobs_log_is_for_its_owner_and_the_admins_only") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let other = ensure_user(OTHER);
    let lab = Lab::start();

    let o = lab.gpubook(
        Some(jobber),
        &[
            "--json",
            "book",
            "--gpu",
            "0",
            "--asap",
            "--for",
            "1h",
            "--",
            "sh",
            "-c",
            "echo 'to stdout: epoch 1 loss 0.5'; echo 'to stderr: warning' >&2",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = json(&o.stdout, &o)["booking"]["id"].as_u64().unwrap();
    let ids = id.to_string();
    // `gpubook wait` until the job is over; it exits with the job's status.
    let o = lab.gpubook(Some(jobber), &["wait", &ids]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let b = listed(&lab, Some(jobber), id);
    assert_eq!(b["run"]["state"], "finished", "{b:#}");
    let log = PathBuf::from(
        b["run"]["log"]
            .as_str()
            .expect("the owner sees the log's path"),
    );

    // The file: the owner's, nobody else's.
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!(meta.uid(), jobber.0, "the log belongs to its owner");
    assert_eq!(
        meta.mode() & 0o077,
        0,
        "others may open the log: {:o}",
        meta.mode()
    );
    let o = run_as(jobber, "cat", &[log.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "the owner cannot read the log: {}",
        text(&o)
    );
    let content = String::from_utf8_lossy(&o.stdout);
    assert!(
        content.contains("to stdout: epoch 1 loss 0.5") && content.contains("to stderr: warning"),
        "{content}"
    );
    let o = run_as(other, "cat", &[log.to_str().unwrap()]);
    assert!(
        !o.status.success(),
        "another user read the log: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        text(&o)
    );
    // Nor can they list the log directory to find it.
    let o = run_as(other, "ls", &[log.parent().unwrap().to_str().unwrap()]);
    assert!(!o.status.success(), "{}", text(&o));
    // Another user's listing does not even show where it is.
    assert!(listed(&lab, Some(other), id)["run"]["log"].is_null());

    // Through the agent: the owner reads it...
    let o = lab.gpubook(Some(jobber), &["logs", &ids]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("to stdout: epoch 1 loss 0.5") && out.contains("to stderr: warning"),
        "{}",
        text(&o)
    );
    // ...another user is refused...
    let o = lab.gpubook(Some(other), &["logs", &ids]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(o.stdout.is_empty(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(JOBBER),
        "the refusal should say whose log it is: {}",
        text(&o)
    );
    let o = lab.gpubook(Some(other), &["--json", "logs", &ids]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(json(&o.stderr, &o)["error"]["kind"], "not_allowed");
    // ...and an admin (root) may read it.
    let o = lab.gpubook(None, &["logs", &ids]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("to stdout: epoch 1 loss 0.5"));
    drop(lab);
}

#[test]
fn gpubook_run_streams_the_log_and_exits_with_the_jobs_status() {
    if !root_or_skip("gpubook_run_streams_the_log_and_exits_with_the_jobs_status") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let lab = Lab::start();
    let o = lab.gpubook(
        Some(jobber),
        &[
            "run",
            "--gpu",
            "0",
            "--asap",
            "--for",
            "1h",
            "--",
            "sh",
            "-c",
            "echo hello; exit 7",
        ],
    );
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines().any(|l| l == "hello"),
        "the job's output should be streamed: {}",
        text(&o)
    );
    // The job ended early: the rest of its hour went back to the lab.
    let o = lab.gpubook(Some(jobber), &["--json", "ls", "--past", "--mine"]);
    let v = json(&o.stdout, &o);
    let b = &v["bookings"][0];
    assert_eq!(b["run"]["exit_code"], 7, "{b:#}");
    assert_eq!(b["state"], "ended", "{b:#}");
    assert_eq!(b["owner"], JOBBER);
    drop(lab);
}

#[test]
fn gpubook_book_refuses_an_end_signal_that_is_not_a_signal() {
    if !root_or_skip("gpubook_book_refuses_an_end_signal_that_is_not_a_signal") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let lab = Lab::start();
    let o = lab.gpubook(
        Some(jobber),
        &[
            "book",
            "--gpu",
            "0",
            "--start",
            "+1h",
            "--for",
            "1h",
            "--end-signal",
            "SIGBOGUS",
            "--",
            "./train.sh",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("SIGBOGUS"),
        "{}",
        text(&o)
    );
    let o = lab.gpubook(Some(jobber), &["--json", "ls", "--past"]);
    let v = json(&o.stdout, &o);
    assert_eq!(v["bookings"].as_array().map(Vec::len), Some(0), "{v:#}");
    drop(lab);
}
