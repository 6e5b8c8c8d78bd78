//! What the CLI's end-to-end tests share: real Unix users (created as root), and an agent run
//! by root in the test process that every user can reach, with the CLI where they can run it.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether this runs as root; if not, says the test is skipped — or fails when
/// GPUBOOK_REQUIRE_ROOT_TESTS is set (CI), so it cannot silently skip there.
pub fn root_or_skip(test: &str) -> bool {
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
pub type Ids = (u32, u32);

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
pub fn ensure_user(name: &str, groups: &[&str]) -> Ids {
    let one_at_a_time = USERS.lock().unwrap_or_else(|p| p.into_inner());
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
    // ensure_group takes the lock itself.
    drop(one_at_a_time);
    for g in groups {
        ensure_group(g);
        let out = Command::new("usermod")
            .args(["-a", "-G", g, name])
            .output()
            .unwrap();
        assert!(out.status.success(), "usermod -a -G {g} {name} failed");
    }
    ids
}

/// The Unix group `name`, created if missing.
pub fn ensure_group(name: &str) {
    let _one_at_a_time = USERS.lock().unwrap_or_else(|p| p.into_inner());
    let exists = Command::new("getent")
        .args(["group", name])
        .output()
        .unwrap();
    if !exists.status.success() {
        let out = Command::new("groupadd").arg(name).output().unwrap();
        let again = Command::new("getent")
            .args(["group", name])
            .output()
            .unwrap();
        assert!(again.status.success(), "groupadd {name} failed: {out:?}");
    }
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

/// The agent as root (system mode, shared socket, the given policy), in this process, in a
/// directory every user may traverse. Stopped on drop.
pub struct Lab {
    /// Holds the state, the socket and the CLI.
    _dir: tempfile::TempDir,
    /// The agent's socket.
    pub socket: PathBuf,
    /// The CLI, where every user can run it.
    pub cli: PathBuf,
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
    pub fn start(policy_toml: &str, gpus: &str) -> Self {
        Self::start_seeded(policy_toml, gpus, |_| {})
    }

    /// As [`Lab::start`], with `seed` given the agent's state directory first (to write a
    /// recorded history into its store before the agent opens it).
    pub fn start_seeded(policy_toml: &str, gpus: &str, seed: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        seed(&dir.path().join("state"));
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
        std::fs::write(&policy, policy_toml).unwrap();
        let socket = dir.path().join("run").join("agent.sock");
        let config = gpubook_agent::AgentConfig {
            state_dir: dir.path().join("state"),
            socket: socket.clone(),
            gpus: gpus.parse().unwrap(),
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
    pub fn gpubook(&self, user: Option<Ids>, args: &[&str]) -> Output {
        self.command(user, args).output().expect("run gpubook")
    }

    /// The CLI as `user` (or root) with `args`, talking to this agent, in `/` with no terminal;
    /// for a test that changes where it runs or how.
    pub fn command(&self, user: Option<Ids>, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.cli);
        cmd.arg("--server")
            .arg(format!("unix:{}", self.socket.display()))
            .args(args)
            .env_remove("GPUBOOK_SERVER")
            .env("TZ", "UTC")
            .stdin(std::process::Stdio::null())
            .current_dir("/");
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

/// An output's status and streams, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
