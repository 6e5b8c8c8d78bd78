//! Fixtures for the job tests (`jobs_*.rs`): real Unix users, the real agent binary as root
//! with a shared socket and a one-second grid, connections as a user through the real
//! `gpubook-agent bridge` run under that user's uid (as over SSH), event histories, job
//! scripts the users can run, and /proc checks.
//!
//! Every test here needs root (to create users and to run jobs as them) and asks
//! gpubook-testkit's `require_root` first: with GPUBOOK_REQUIRE_ROOT_TESTS set (CI) a test
//! that is not root fails instead of skipping. Users and waiting come from the testkit too.

// Each test file uses its own part of this module (re-exports included).
#![allow(dead_code, unused_imports)]

pub use gpubook_testkit::agent::SERVER;
use gpubook_testkit::agent::{await_ready, read_log};
pub use gpubook_testkit::bookings::{booked, job};
use gpubook_testkit::users::others_can_run;
pub use gpubook_testkit::users::run_as;
pub use gpubook_testkit::{ensure_user, require_root, wait_until_within, User};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use gpubook_agent::clock::SystemClock;
use gpubook_agent::gpu::sim::SimReader;
use gpubook_agent::gpu::GpuReader;
use gpubook_agent::state::State;
use gpubook_agent::store::Store;
use gpubook_client::{Connection, Pushed};
use gpubook_core::{Booking, BookingId, JobSpec, Policy};
use gpubook_proto::{
    BookRequest, BookingResponse, Event, EventKind, GpuChoice, ListRequest, Request, Response,
    WhenChoice,
};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::mpsc::UnboundedReceiver;

/// The user who owns the jobs.
pub const JOBBER: &str = "gpb-jobber";
/// Another non-root user, who must not see the jobber's logs.
pub const OTHER: &str = "gpb-other";
/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// The policy every test agent runs under: slots on a one-second grid, so a slot can start
/// a few seconds from now.
pub const POLICY: &str = "granularity = \"1s\"\n";

/// The UUID of simulated GPU `i`.
pub fn sim_uuid(i: u32) -> String {
    format!("SIM-{SERVER}-{i}")
}

/// The real agent binary in a temporary directory that every user may traverse: as root with
/// a shared socket (system mode), or as a given user (personal mode). Killed on drop.
#[derive(Debug)]
pub struct Lab {
    /// Holds everything; mode 0755.
    dir: TempDir,
    /// Simulated GPUs.
    gpus: u32,
    /// The agent, while it runs.
    child: Option<Child>,
    /// Who the agent runs as: root (system mode) when `None`.
    owner: Option<User>,
    /// More arguments for `serve` (limits for a test).
    extra: Vec<String>,
    /// `--gpus` other than `sim:<gpus>` (`slurm`).
    source: Option<String>,
}

impl Lab {
    /// A lab with `gpus` simulated GPUs; the agent is not started yet (see [`Lab::start`]).
    pub fn new(gpus: u32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
        std::fs::set_permissions(
            dir.path().join("policy.toml"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let scripts = dir.path().join("scripts");
        std::fs::create_dir(&scripts).unwrap();
        std::fs::set_permissions(&scripts, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self {
            dir,
            gpus,
            child: None,
            owner: None,
            extra: Vec::new(),
            source: None,
        }
    }

    /// A lab whose agent serves the Slurm cluster of `scripts/slurm-services.sh`.
    pub fn slurm() -> Self {
        let mut lab = Self::new(0);
        lab.source = Some("slurm".into());
        lab
    }

    /// Passes `args` to `serve` at every later start.
    pub fn serve_args(&mut self, args: &[&str]) {
        self.extra = args.iter().map(|a| a.to_string()).collect();
    }

    /// Replaces the lab's policy file (before the agent starts).
    pub fn policy(&self, text: &str) {
        std::fs::write(
            self.dir.path().join("policy.toml"),
            format!("{POLICY}{text}"),
        )
        .unwrap();
    }

    /// The running agent's pid.
    pub fn agent_pid(&self) -> u32 {
        self.child.as_ref().expect("the agent runs").id()
    }

    /// A raw byte stream to the agent as `user`, through `gpubook-agent bridge` under their
    /// uid: (what goes to the agent, what comes back, the bridge).
    pub fn raw_as(
        &self,
        user: &User,
    ) -> (
        tokio::process::ChildStdin,
        tokio::process::ChildStdout,
        tokio::process::Child,
    ) {
        let mut bridge = tokio::process::Command::new(self.agent_bin())
            .arg("bridge")
            .arg("--socket")
            .arg(self.socket())
            .uid(user.uid)
            .gid(user.gid)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the bridge");
        let stdin = bridge.stdin.take().expect("bridge stdin");
        let stdout = bridge.stdout.take().expect("bridge stdout");
        (stdin, stdout, bridge)
    }

    /// A lab whose agent runs as `user` (personal mode), its state and socket in a directory
    /// that user owns.
    pub fn personal(gpus: u32, user: &User) -> Self {
        let mut lab = Self::new(gpus);
        let home = lab.dir.path().join("personal");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(user.uid), Some(user.gid)).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        lab.owner = Some(user.clone());
        lab
    }

    /// The lab's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn base(&self) -> PathBuf {
        match self.owner {
            Some(_) => self.dir.path().join("personal"),
            None => self.dir.path().to_path_buf(),
        }
    }

    /// The agent's socket.
    pub fn socket(&self) -> PathBuf {
        self.base().join("run").join("agent.sock")
    }

    /// The agent's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.base().join("state")
    }

    /// Where the agent writes its stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// What the agent wrote to stderr, across every start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The agent binary, where every user may run it (copied into the lab if the build
    /// directory is closed to them).
    pub fn agent_bin(&self) -> PathBuf {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_gpubook-agent"));
        if others_can_run(&built) {
            return built;
        }
        let copy = self.dir.path().join("gpubook-agent");
        if !copy.exists() {
            std::fs::copy(&built, &copy).expect("copy the agent binary");
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        copy
    }

    /// Applies `f` to the agent's stored state while the agent does not run (as the agent
    /// would load it: same GPUs, same policy).
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        assert!(self.child.is_none(), "the agent must not run meanwhile");
        let dir = self.state_dir();
        std::fs::create_dir_all(&dir).expect("state dir");
        let store = Store::open(&dir.join("agent.db")).expect("store");
        let inventory = SimReader::new(self.gpus, SERVER).inventory();
        let policy = Policy::from_toml(POLICY).expect("policy");
        let state = State::load(store, inventory, policy, Arc::new(SystemClock)).expect("state");
        f(&state)
    }

    /// Starts the agent (again) on the same state directory and waits until it answers.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "the agent is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let mut cmd = Command::new(self.agent_bin());
        cmd.arg("serve")
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--socket")
            .arg(self.socket())
            .arg("--gpus")
            .arg(
                self.source
                    .clone()
                    .unwrap_or_else(|| format!("sim:{}", self.gpus)),
            )
            .arg("--name")
            .arg(SERVER)
            .arg("--policy")
            .arg(self.dir.path().join("policy.toml"))
            .args(&self.extra)
            .env_remove("GPUBOOK_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        match &self.owner {
            Some(u) => {
                cmd.uid(u.uid).gid(u.gid).env("HOME", &u.home);
            }
            None => {
                cmd.arg("--shared");
            }
        }
        self.child = Some(cmd.spawn().expect("cannot start gpubook-agent"));
        let (socket, log) = (self.socket(), self.log_path());
        await_ready(&mut self.child, &socket, || read_log(&log)).await;
    }

    /// Kills the agent with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // std's kill sends SIGKILL.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A connection as root (an admin: sees every booking and job).
    pub async fn root(&self) -> Connection {
        // A personal agent runs as its owner, whom root names to be trusted.
        let agent = self.owner.as_ref().map_or(0, |u| u.uid);
        Connection::unix_served_by(&self.socket(), "jobs-test", agent)
            .await
            .unwrap_or_else(|e| panic!("cannot connect: {e}\n{}", self.log()))
    }

    /// A connection as `user`: `gpubook-agent bridge` run under their uid, so the agent
    /// learns who they are from the socket, as it does over SSH.
    pub async fn connect_as(&self, user: &User) -> UserConn {
        let (stdin, stdout, bridge) = self.raw_as(user);
        let conn = Connection::over(stdout, stdin, "jobs-test")
            .await
            .unwrap_or_else(|e| panic!("cannot connect as {}: {e}\n{}", user.name, self.log()));
        assert_eq!(
            conn.welcome().user,
            user.name,
            "the agent sees someone else"
        );
        UserConn {
            conn,
            _bridge: bridge,
        }
    }

    /// An executable script `name` with `body`, where every user can read and run it.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join("scripts").join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A fresh directory `name` owned by `user`, where their job writes what it saw.
    pub fn out_dir(&self, name: &str, user: &User) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill();
        // A failed test may leave its jobs running: end every process this agent started.
        let db = self.state_dir().join("agent.db");
        let Some(instance) = db
            .exists()
            .then(|| Store::open(&db).ok()?.instance_id().ok())
            .flatten()
        else {
            return;
        };
        let needle = format!("{}={instance}-", gpubook_agent::jobs::JOB_KEY_VAR);
        for pid in processes_with_env_prefix(&needle) {
            kill(pid as i32, libc::SIGKILL);
        }
    }
}

/// Every process with an environment entry that starts with `prefix`.
pub fn processes_with_env_prefix(prefix: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|var| var.starts_with(prefix.as_bytes()))
            })
        })
        .collect()
}

/// A connection as a non-root user, through a bridge process run as them.
#[derive(Debug)]
pub struct UserConn {
    /// The connection.
    pub conn: Connection,
    /// The bridge, killed on drop.
    _bridge: tokio::process::Child,
}

/// Every event from the first, as root sees them, kept so a test can look back.
#[derive(Debug)]
pub struct Events {
    /// The connection the subscription lives on.
    _conn: Connection,
    /// Pushed frames.
    rx: UnboundedReceiver<Pushed>,
    /// Every event received so far, in order.
    pub seen: Vec<Event>,
    /// The agent's stderr, shown when an expected event does not come.
    agent_log: PathBuf,
}

impl Events {
    /// Subscribes from the first event on.
    pub async fn subscribe(lab: &Lab) -> Self {
        let conn = lab.root().await;
        let (_, rx) = conn.subscribe(Some(0), false).await.expect("subscribe");
        Self {
            _conn: conn,
            rx,
            seen: Vec::new(),
            agent_log: lab.dir.path().join("agent.log"),
        }
    }

    /// The first event of `kind` about booking `id` (already seen, or the next one to come),
    /// failing after `limit`.
    pub async fn wait_for(&mut self, id: BookingId, kind: EventKind, limit: Duration) -> Event {
        self.wait_until(id, kind, limit, |_| true).await
    }

    /// The first event of `kind` about booking `id` that `wanted` accepts, failing after
    /// `limit`.
    pub async fn wait_until(
        &mut self,
        id: BookingId,
        kind: EventKind,
        limit: Duration,
        wanted: impl Fn(&Event) -> bool,
    ) -> Event {
        let until = tokio::time::Instant::now() + limit;
        loop {
            if let Some(e) = self
                .seen
                .iter()
                .find(|e| e.booking.id == id && e.kind == kind && wanted(e))
            {
                return e.clone();
            }
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Err(_) => panic!(
                    "no {kind:?} for booking {id} within {limit:?}; events so far:\n{}",
                    self.describe()
                ),
                Ok(None) => panic!(
                    "the subscription ended; events so far:\n{}",
                    self.describe()
                ),
                Ok(Some(Pushed::Event(e))) => self.seen.push(e),
                Ok(Some(Pushed::Readings(_) | Pushed::Log(_))) => {}
                Ok(Some(Pushed::Error(e))) => panic!("the agent pushed an error: {e:?}"),
            }
        }
    }

    /// The next event not seen yet, failing after `limit`.
    pub async fn next(&mut self, limit: Duration) -> Event {
        let until = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Err(_) => panic!("no event within {limit:?}"),
                Ok(None) => panic!("the subscription ended"),
                Ok(Some(Pushed::Event(e))) => {
                    self.seen.push(e.clone());
                    return e;
                }
                Ok(Some(Pushed::Readings(_) | Pushed::Log(_))) => {}
                Ok(Some(Pushed::Error(e))) => panic!("the agent pushed an error: {e:?}"),
            }
        }
    }

    /// Takes in whatever events arrive within `limit` (none is fine).
    pub async fn drain(&mut self, limit: Duration) {
        let until = tokio::time::Instant::now() + limit;
        while let Ok(Some(pushed)) = tokio::time::timeout_at(until, self.rx.recv()).await {
            if let Pushed::Event(e) = pushed {
                self.seen.push(e);
            }
        }
    }

    /// How many events of `kind` about booking `id` arrived so far.
    pub fn count(&self, id: BookingId, kind: EventKind) -> usize {
        self.seen
            .iter()
            .filter(|e| e.booking.id == id && e.kind == kind)
            .count()
    }

    /// The events so far, one line each, and what the agent wrote to stderr.
    pub fn describe(&self) -> String {
        let events = self
            .seen
            .iter()
            .map(|e| {
                format!(
                    "  #{} {} {:?} booking {} {:?} run {:?}",
                    e.seq, e.at, e.kind, e.booking.id, e.booking.state, e.booking.run
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let log = std::fs::read_to_string(&self.agent_log).unwrap_or_default();
        format!("{events}\nthe agent's stderr:\n{log}")
    }
}

/// A booking of the GPUs named by index, from `start` to `end`, running `job`.
pub fn book(
    gpus: &[&str],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    title: &str,
    job: Option<JobSpec>,
) -> Request {
    Request::Book(BookRequest {
        gpus: GpuChoice::Named {
            gpus: gpus.iter().map(|g| g.to_string()).collect(),
        },
        when: WhenChoice::At { start, end },
        title: title.to_string(),
        job,
    })
}

/// An "as soon as possible" booking of the GPUs named by index for `secs` seconds.
pub fn book_asap(gpus: &[&str], secs: i64, title: &str, job: Option<JobSpec>) -> Request {
    Request::Book(BookRequest {
        gpus: GpuChoice::Named {
            gpus: gpus.iter().map(|g| g.to_string()).collect(),
        },
        when: WhenChoice::Asap {
            duration_secs: secs,
        },
        title: title.to_string(),
        job,
    })
}

/// A whole second `lead` seconds (or a little less) from now: a slot start on the 1 s grid.
pub fn slot_start(lead: i64) -> DateTime<Utc> {
    let now = Utc::now().timestamp();
    DateTime::from_timestamp(now + lead, 0).expect("a valid time")
}

/// `secs` seconds as a chrono duration.
pub fn secs(secs: i64) -> ChronoDuration {
    ChronoDuration::seconds(secs)
}

/// Booking `id` as `conn` lists it (past ones included).
pub async fn listed(conn: &Connection, id: BookingId) -> Booking {
    conn.list_all(ListRequest {
        include_past: true,
        ..ListRequest::default()
    })
    .await
    .expect("list")
    .bookings
    .into_iter()
    .find(|b| b.id == id)
    .unwrap_or_else(|| panic!("booking {id} is not listed"))
}

/// Polls until `path` exists and returns its contents, failing after `limit`.
pub async fn read_when_there(path: &Path, limit: Duration) -> String {
    wait_until_within(&format!("{}", path.display()), limit, || path.exists()).await;
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The fields of /proc/PID/stat after the command name (state first), if the process exists.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// Whether process `pid` is gone: no longer in /proc, or dead and waiting to be reaped (a
/// zombie: in a container whose init does not reap, orphans stay zombies).
pub fn gone(pid: u32) -> bool {
    match stat_fields(pid) {
        None => true,
        Some(f) => matches!(f[0].as_str(), "Z" | "X"),
    }
}

/// The session id of `pid`, if it runs.
pub fn session_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(3)?.parse().ok()
}

/// The process group of `pid`, if it runs.
pub fn group_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// The start time of `pid` in clock ticks since boot, if it runs.
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// A file of NAME=VALUE lines (`env` output) as a map.
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Sends `signal` to process `pid` (or a process group, with a negative number).
pub fn kill(pid: i32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Appends a line to `starts` each time it starts; exits 0 on SIGTERM ("got TERM").
pub const ONCE: &str = r#"#!/bin/bash
out="$1"
echo "started $(date +%s.%N) as $$" >> "$out/starts"
trap 'echo "got TERM" > "$out/signal"; exit 0' TERM
echo $$ > "$out/pid"
touch "$out/ready"
sleep 1000 &
wait $!
"#;

/// A lab whose job (the ONCE script, owned by the jobber, `grace` seconds between SIGTERM and
/// SIGKILL) runs in a slot from about 3 s from now for `len` seconds; returns once the job has
/// started, with its booking, its output directory and its pid.
pub async fn running_job(len: i64, grace: u32) -> (Lab, Booking, PathBuf, u32) {
    running_script(ONCE, len, grace).await
}

/// [`running_job`] with another script, run as `SCRIPT OUT_DIR`; it must touch `OUT_DIR/ready`.
pub async fn running_script(body: &str, len: i64, grace: u32) -> (Lab, Booking, PathBuf, u32) {
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(2);
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let out = lab.out_dir("out", &jobber);
    let script = lab.script("job.sh", body);
    let user = lab.connect_as(&jobber).await;
    let start = slot_start(3);
    let mut spec = job(&format!("{} {}", script.display(), out.display()));
    spec.grace_secs = Some(grace);
    let b = booked(
        user.conn
            .request(book(
                &["0"],
                start,
                start + secs(len),
                "survivor",
                Some(spec),
            ))
            .await,
    )
    .booking;
    let started = events.wait_for(b.id, EventKind::JobStarted, DEADLINE).await;
    read_when_there(&out.join("ready"), DEADLINE).await;
    let pid = started.booking.run.and_then(|r| r.pid).expect("pid");
    (lab, b, out, pid)
}

/// The job key (GPUBOOK_JOB_KEY) in process `pid`'s environment, if it has one.
pub fn job_key_of(pid: u32) -> Option<String> {
    let needle = format!("{}=", gpubook_agent::jobs::JOB_KEY_VAR);
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(needle.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Every live (not zombie) process that carries job key `key`.
pub fn job_processes(key: &str) -> Vec<u32> {
    let needle = format!("{}={key}", gpubook_agent::jobs::JOB_KEY_VAR);
    processes_with_env_prefix(&needle)
        .into_iter()
        .filter(|pid| job_key_of(*pid).as_deref() == Some(key) && !gone(*pid))
        .collect()
}
