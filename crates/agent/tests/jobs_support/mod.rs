//! Fixtures for the job tests (`jobs_*.rs`): real Unix users, the real agent binary as root
//! with a shared socket and a one-second grid, connections as a user through the real
//! `gpubook-agent bridge` run under that user's uid (as over SSH), event histories, job
//! scripts the users can run, and /proc checks.
//!
//! Every test here needs root (to create users and to run jobs as them). CI runs as root and
//! sets GPUBOOK_REQUIRE_ROOT_TESTS=1, so there a test that is not root fails instead of
//! skipping.

// Each test file uses its own part of this module.
#![allow(dead_code)]

#[path = "../common/mod.rs"]
mod common;

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

/// The server name of every test agent; simulated GPU UUIDs are `SIM-lab-test-N`.
pub const SERVER: &str = "lab-test";
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

fn is_root() -> bool {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// Whether a test that needs root may run: true as root. Otherwise it prints why it skips and
/// returns false, or fails when GPUBOOK_REQUIRE_ROOT_TESTS is set (CI).
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("GPUBOOK_REQUIRE_ROOT_TESTS").is_none(),
        "GPUBOOK_REQUIRE_ROOT_TESTS is set but {test} does not run as root"
    );
    eprintln!("skipped {test}: it creates Unix users and runs jobs as them, which needs root");
    false
}

/// A real Unix user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Their name.
    pub name: String,
    /// Their uid.
    pub uid: u32,
    /// Their primary gid.
    pub gid: u32,
    /// Their home directory.
    pub home: PathBuf,
}

/// Serialises user creation within this test binary (useradd locks /etc/passwd).
static USERS: Mutex<()> = Mutex::new(());

fn passwd(name: &str) -> Option<Vec<String>> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .expect("run getent");
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(':')
            .map(str::to_string)
            .collect(),
    )
}

/// The user `name` with a home and /bin/bash as login shell, created if missing (reused if it
/// exists). Needs root.
pub fn ensure_user(name: &str) -> User {
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
    let fields = passwd(name).expect("the user exists now");
    let user = User {
        name: name.to_string(),
        uid: fields[2].parse().expect("uid"),
        gid: fields[3].parse().expect("gid"),
        home: PathBuf::from(&fields[5]),
    };
    assert_ne!(user.uid, 0, "{name} must not be root");
    if fields[6] != "/bin/bash" {
        let out = Command::new("usermod")
            .args(["-s", "/bin/bash", name])
            .output()
            .expect("run usermod");
        assert!(out.status.success(), "usermod -s /bin/bash {name} failed");
    }
    if !user.home.is_dir() {
        std::fs::create_dir_all(&user.home).expect("create the user's home");
        std::os::unix::fs::chown(&user.home, Some(user.uid), Some(user.gid)).expect("chown");
    }
    user
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

/// Runs `cmd` as `user`, returning (status code, stdout, stderr).
pub fn run_as(user: &User, cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd
        .uid(user.uid)
        .gid(user.gid)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} as {}: {e}", user.name));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
        }
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
            .arg(format!("sim:{}", self.gpus))
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
        common::await_ready(&mut self.child, &socket, || common::read_log(&log)).await;
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
        let until = tokio::time::Instant::now() + limit;
        loop {
            if let Some(e) = self
                .seen
                .iter()
                .find(|e| e.booking.id == id && e.kind == kind)
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

/// A job running `command` with every option at its default.
pub fn job(command: &str) -> JobSpec {
    JobSpec {
        command: command.to_string(),
        cwd: None,
        env: BTreeMap::new(),
        end_signal: None,
        grace_secs: None,
        keep_slot: false,
        ..Default::default()
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

/// The booking a change answered with, or a panic naming what came instead.
pub fn booked(r: Result<Response, gpubook_client::ClientError>) -> BookingResponse {
    match r {
        Ok(Response::Booking(b)) => b,
        other => panic!("expected a booking, got {other:?}"),
    }
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

/// Polls `cond` until it holds, failing the test after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `path` exists and returns its contents, failing after `limit`.
pub async fn read_when_there(path: &Path, limit: Duration) -> String {
    wait_until(&format!("{}", path.display()), limit, || path.exists()).await;
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
