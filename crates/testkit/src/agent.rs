//! The agent for tests: the real `gpubook-agent` binary as a child process ([`AgentProcess`],
//! which a test can SIGKILL and start again on the same state), or the agent's library in the
//! test's own process ([`InProcessAgent`], on a clock the test may move). Both serve
//! simulated GPUs from a temporary directory and stop on drop.

use crate::wait::DEADLINE;
use chrono::{DateTime, Utc};
use gpubook_agent::clock::{Clock, ManualClock, SystemClock};
use gpubook_agent::gpu::Source;
use gpubook_agent::server::{bind, AgentConfig};
use gpubook_agent::state::State;
use gpubook_client::Connection;
use gpubook_core::{Actor, Booking, Op, Role};
use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// The server name test agents run under unless a test names another; simulated GPU UUIDs
/// are `SIM-lab-test-N`.
pub const SERVER: &str = "lab-test";

/// The built `gpubook-agent` binary: `$GPUBOOK_AGENT_BINARY`, else next to this test's target
/// directory (`cargo test -p gpubook-agent` and `cargo test --workspace` build it), built on
/// demand when missing.
pub fn agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GPUBOOK_AGENT_BINARY").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test's path");
    // target/<profile>/deps/<test> -> target/<profile>/gpubook-agent
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = profile_dir.join("gpubook-agent");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "gpubook-agent", "--bin", "gpubook-agent"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        crate::sshd::sh(&mut cmd);
    }
    assert!(bin.is_file(), "no gpubook-agent at {}", bin.display());
    bin
}

/// A copy of the agent binary `bin` in `dir` that any user may run.
pub fn runnable_copy(bin: &Path, dir: &Path) -> PathBuf {
    crate::users::runnable_copy_as(bin, dir, "gpubook-agent")
}

/// The real agent binary serving `sim:N` GPUs from a temporary directory. Killed on drop.
#[derive(Debug)]
pub struct AgentProcess {
    /// Holds the state directory, the socket and the agent's log; removed on drop.
    dir: TempDir,
    /// How many simulated GPUs the agent serves.
    gpus: u32,
    /// The server's name.
    name: String,
    /// More arguments for `serve`.
    extra: Vec<String>,
    /// `--gpus` other than `sim:<gpus>` (`slurm`).
    source: Option<String>,
    /// The running agent, if it runs.
    child: Option<Child>,
}

impl AgentProcess {
    /// Starts an agent named [`SERVER`] with `gpus` simulated GPUs in a fresh directory,
    /// ready for clients.
    pub async fn start(gpus: u32) -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"), gpus).await
    }

    /// Starts an agent named `name`, sampling its GPUs every half second.
    pub async fn named(name: &str, gpus: u32) -> Self {
        let mut agent = Self::stopped(tempfile::tempdir().expect("temp dir"), gpus);
        agent.name = name.into();
        agent.extra = vec!["--sample-secs".into(), "0.5".into()];
        agent.restart().await;
        agent
    }

    /// Starts a shared agent (every local user may connect, as a system agent lets them) with
    /// the lab's `policy` (TOML), in a fresh directory that every user can reach. The real
    /// binary: what it spawns for users (copies, jobs) is the agent's own.
    pub async fn shared_with_policy(gpus: u32, policy: &str) -> Self {
        Self::shared(gpus, None, policy).await
    }

    /// As [`AgentProcess::shared_with_policy`], reading the GPUs from `source` (`--gpus`,
    /// e.g. `slurm`) instead of simulating them.
    pub async fn shared_on(source: &str, policy: &str) -> Self {
        Self::shared(0, Some(source.into()), policy).await
    }

    async fn shared(gpus: u32, source: Option<String>, policy: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("open the agent's directory to its users");
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, policy).expect("write the policy");
        let mut agent = Self::stopped(dir, gpus);
        agent.source = source;
        agent.extra = vec![
            "--shared".into(),
            "--policy".into(),
            path.display().to_string(),
        ];
        agent.restart().await;
        agent
    }

    /// Starts an agent over a directory that may already hold state (see [`seed`]).
    pub async fn start_in(dir: TempDir, gpus: u32) -> Self {
        let mut agent = Self::stopped(dir, gpus);
        agent.restart().await;
        agent
    }

    fn stopped(dir: TempDir, gpus: u32) -> Self {
        Self {
            dir,
            gpus,
            name: SERVER.into(),
            extra: Vec::new(),
            source: None,
            child: None,
        }
    }

    /// The agent's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    /// The agent's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Where the agent writes its stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// What the agent wrote to stderr, across every start.
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }

    /// Starts the agent (again) on the same state directory and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the agent is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("agent log");
        let child = Command::new(agent_binary())
            .arg("serve")
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
            .arg(&self.name)
            .args(&self.extra)
            .env_remove("GPUBOOK_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start gpubook-agent");
        self.child = Some(child);
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

    /// Whether the agent process is still running.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// A new client connection, after the handshake.
    pub async fn connect(&self) -> Connection {
        Connection::unix(&self.socket(), "agent-test")
            .await
            .unwrap_or_else(|e| panic!("cannot connect: {e}\n{}", self.log()))
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until the agent just started as `child` answers a handshake on `socket` (not just
/// until the socket file exists); panics with `log()` if it exits or stays silent. A child
/// that exited is taken out of `child`.
pub async fn await_ready(child: &mut Option<Child>, socket: &Path, log: impl Fn() -> String) {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            *child = None;
            panic!("gpubook-agent exited with {status} at start:\n{}", log());
        }
        // The agent may run as another user (a personal agent probed by root): the test
        // trusts whoever owns the socket it made.
        let owner = std::fs::metadata(socket).map(|m| m.uid()).unwrap_or(0);
        if Connection::unix_served_by(socket, "ready-probe", owner)
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            Instant::now() < until,
            "gpubook-agent did not answer within {DEADLINE:?}:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A log file's text so far ("" when missing), for failure messages.
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// What an [`InProcessAgent`] starts with; [`InProcessAgent::builder`] gives the defaults.
#[derive(Debug)]
pub struct Options {
    /// Simulated GPUs.
    pub gpus: u32,
    /// The server's name.
    pub name: String,
    /// The policy file's text, if any.
    pub policy: Option<String>,
    /// A shared socket (system mode) that every user may reach.
    pub shared: bool,
    /// How often GPUs are sampled.
    pub sample_interval: Duration,
    /// The clock's time, for a [`ManualClock`]; the system clock when `None`.
    pub now: Option<DateTime<Utc>>,
    /// Its directory, when the test chose it beforehand (to point a client at the socket
    /// before the agent runs); a fresh one when `None`.
    pub dir: Option<TempDir>,
}

impl Options {
    /// Starts the agent.
    pub async fn start(self) -> InProcessAgent {
        InProcessAgent::with(self).await
    }
}

/// An agent inside the test process. Stopped on drop.
#[derive(Debug)]
pub struct InProcessAgent {
    /// Holds the state directory, the socket and the policy; mode 0755. Taken only by
    /// [`InProcessAgent::stop_keeping_dir`].
    dir: Option<TempDir>,
    /// The agent's clock when the test moves it (see [`InProcessAgent::clock`]).
    manual: Option<Arc<ManualClock>>,
    /// The agent's state, to look at directly or change as other people.
    pub state: Arc<State>,
    /// Tells the agent to stop.
    shutdown: Option<oneshot::Sender<()>>,
    /// The agent's task.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl InProcessAgent {
    /// The defaults: `gpus` simulated GPUs, named [`SERVER`], no policy, a private socket,
    /// sampled every second, on the system clock.
    pub fn builder(gpus: u32) -> Options {
        Options {
            gpus,
            name: SERVER.into(),
            policy: None,
            shared: false,
            sample_interval: Duration::from_secs(1),
            now: None,
            dir: None,
        }
    }

    /// An agent with `gpus` simulated GPUs on a [`ManualClock`] showing `now`.
    pub async fn start(gpus: u32, now: DateTime<Utc>) -> Self {
        Self::builder(gpus).at(now).start().await
    }

    /// Binds an agent with `options` and runs it on the current runtime.
    pub async fn with(options: Options) -> Self {
        let dir = match options.dir {
            Some(d) => d,
            None => tempfile::tempdir().expect("temp dir"),
        };
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod the agent's directory");
        let policy = options.policy.as_ref().map(|text| {
            let p = dir.path().join("policy.toml");
            std::fs::write(&p, text).expect("write the policy");
            p
        });
        let manual = options.now.map(|now| Arc::new(ManualClock::new(now)));
        let clock: Arc<dyn Clock> = match &manual {
            Some(c) => c.clone(),
            None => Arc::new(SystemClock),
        };
        let socket = if options.shared {
            dir.path().join("run").join("agent.sock")
        } else {
            dir.path().join("agent.sock")
        };
        let agent = bind(
            AgentConfig {
                state_dir: dir.path().join("state"),
                socket,
                gpus: Source::Sim(options.gpus),
                policy,
                server_name: options.name,
                shared: options.shared,
                sample_interval: options.sample_interval,
            },
            clock,
        )
        .await
        .expect("bind the agent");
        let state = agent.state();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(agent.run(async move {
            let _ = rx.await;
        }));
        Self {
            dir: Some(dir),
            manual,
            state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The agent's socket.
    pub fn socket(&self) -> PathBuf {
        let shared = self.path().join("run").join("agent.sock");
        if shared.exists() {
            shared
        } else {
            self.path().join("agent.sock")
        }
    }

    /// The agent's directory (state, socket, policy), traversable by every user.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("the agent's directory").path()
    }

    /// Stops the agent, waits until it has, and hands over its directory with the state
    /// left in place: for a test that starts another agent there.
    pub async fn stop_keeping_dir(mut self) -> TempDir {
        let dir = self.dir.take().expect("the agent's directory");
        self.stop().await;
        dir
    }

    /// The manual clock; panics for an agent on the system clock.
    pub fn clock(&self) -> &Arc<ManualClock> {
        self.manual.as_ref().expect("an agent on a manual clock")
    }

    /// A new client connection as the test's user, after the handshake.
    pub async fn connect(&self) -> Connection {
        Connection::unix(&self.socket(), "agent-test")
            .await
            .expect("cannot connect to the in-process agent")
    }

    /// A live session to the agent, and its first follower's stream (the feed's and the
    /// CalDAV sync's source).
    pub fn live(
        &self,
    ) -> (
        gpubook_client::live::LiveSession,
        gpubook_client::live::LiveEvents,
    ) {
        let socket = self.socket();
        gpubook_client::live::LiveSession::start(
            move || {
                let s = socket.clone();
                async move { Connection::unix(&s, "calendar-test").await }
            },
            Default::default(),
        )
    }

    /// Applies `op` as `user` with `role` straight to the agent's state, as if they had
    /// asked; the booking it changed.
    pub async fn as_user(&self, user: &str, role: Role, op: Op) -> Booking {
        let state = self.state.clone();
        let actor = Actor {
            user: user.into(),
            role,
        };
        tokio::task::spawn_blocking(move || state.change(&actor, op))
            .await
            .expect("the change ran")
            .expect("the change is accepted")
            .first()
            .expect("the change wrote an event")
            .booking
            .clone()
    }

    /// Stops the agent and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(DEADLINE, t)
                .await
                .expect("the agent did not stop")
                .expect("the agent's task failed");
        }
    }
}

impl Options {
    /// On a [`ManualClock`] showing `now`.
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = Some(now);
        self
    }

    /// Under the policy `toml`.
    pub fn policy(mut self, toml: &str) -> Self {
        self.policy = Some(toml.into());
        self
    }

    /// In `dir` (its socket `dir/agent.sock`, or `dir/run/agent.sock` when shared).
    pub fn in_dir(mut self, dir: TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Named `name`.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// With a shared socket (system mode) under `run/`, reachable by every user.
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Sampling GPUs every `every`.
    pub fn sample_every(mut self, every: Duration) -> Self {
        self.sample_interval = every;
        self
    }
}

impl Drop for InProcessAgent {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
