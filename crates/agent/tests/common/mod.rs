//! Fixtures shared by the agent's integration tests: the real `gpubook-agent` binary in a
//! temporary directory (killed on drop), an in-process agent on a [`ManualClock`], a raw
//! socket for frames the client library would never send, and polling with a deadline.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use gpubook_agent::clock::{ManualClock, SystemClock};
use gpubook_agent::gpu::sim::SimReader;
use gpubook_agent::gpu::{GpuReader, Source};
use gpubook_agent::server::{bind, AgentConfig};
use gpubook_agent::state::State;
use gpubook_agent::store::Store;
use gpubook_client::{Connection, Pushed};
use gpubook_core::time::floor_to;
use gpubook_core::{Booking, Policy};
use gpubook_proto::{
    AgentFrame, BookRequest, ClientFrame, Event, GpuChoice, Hello, ListRequest, Request, Response,
    WhenChoice, PROTOCOL_MAJOR, PROTOCOL_MINOR,
};
use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// The server name every test agent runs under; simulated GPU UUIDs are `SIM-lab-test-N`.
pub const SERVER: &str = "lab-test";

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The UUID of simulated GPU `i` on the test server.
pub fn sim_uuid(i: u32) -> gpubook_core::GpuUuid {
    gpubook_core::GpuUuid(format!("SIM-{SERVER}-{i}"))
}

/// Points on the default 15-minute grid, counted from the grid point one day after the test
/// began: in the future for the whole run, and never snapped by the agent.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    /// Slot 0.
    base: DateTime<Utc>,
}

impl Grid {
    /// The grid for a test starting now.
    pub fn new() -> Self {
        Self {
            base: floor_to(Utc::now(), ChronoDuration::minutes(15)) + ChronoDuration::days(1),
        }
    }

    /// The start of slot `n` (15 minutes each).
    pub fn at(&self, n: i64) -> DateTime<Utc> {
        self.base + ChronoDuration::minutes(15 * n)
    }
}

impl Default for Grid {
    fn default() -> Self {
        Self::new()
    }
}

/// A booking of the GPUs named by index or UUID, from `start` to `end`.
pub fn book_at(gpus: &[&str], start: DateTime<Utc>, end: DateTime<Utc>, title: &str) -> Request {
    Request::Book(BookRequest {
        gpus: GpuChoice::Named {
            gpus: gpus.iter().map(|g| g.to_string()).collect(),
        },
        when: WhenChoice::At { start, end },
        title: title.to_string(),
        job: None,
    })
}

/// Polls `cond` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The real agent binary serving `sim:N` GPUs from a temporary directory. Killed on drop.
#[derive(Debug)]
pub struct AgentProcess {
    /// Holds the state directory, the socket and the agent's log; removed on drop.
    dir: TempDir,
    /// How many simulated GPUs the agent serves.
    gpus: u32,
    /// The running agent, if it runs.
    child: Option<Child>,
}

impl AgentProcess {
    /// Starts an agent with `gpus` simulated GPUs in a fresh directory, ready for clients.
    pub async fn start(gpus: u32) -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"), gpus).await
    }

    /// Starts an agent over a directory that may already hold state (see [`seed`]).
    pub async fn start_in(dir: TempDir, gpus: u32) -> Self {
        let mut agent = Self {
            dir,
            gpus,
            child: None,
        };
        agent.restart().await;
        agent
    }

    /// A directory for an agent, with `f` applied to its state first (as another user, say).
    pub fn seeded(gpus: u32, f: impl FnOnce(&State)) -> TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        seed(&dir.path().join("state"), gpus, Policy::default(), f);
        dir
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
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the agent (again) on the same state directory and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the agent is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let child = Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
            .arg("serve")
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--socket")
            .arg(self.socket())
            .arg("--gpus")
            .arg(format!("sim:{}", self.gpus))
            .arg("--name")
            .arg(SERVER)
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

    /// A raw socket connection, before any handshake.
    pub async fn raw(&self) -> RawConn {
        RawConn {
            stream: UnixStream::connect(self.socket())
                .await
                .expect("cannot connect to the agent's socket"),
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Applies `f` to the state in `state_dir` (created if needed), then closes it: for bookings
/// made by people other than the test's user, before an agent starts there.
pub fn seed(state_dir: &Path, gpus: u32, policy: Policy, f: impl FnOnce(&State)) {
    std::fs::create_dir_all(state_dir).expect("state dir");
    let store = Store::open(&state_dir.join("agent.db")).expect("store");
    let inventory = SimReader::new(gpus, SERVER).inventory();
    let state = State::load(store, inventory, policy, Arc::new(SystemClock)).expect("state");
    f(&state);
}

/// What a person could see of the stored state: every booking and the latest event number.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Every booking, past ones included.
    pub bookings: Vec<Booking>,
    /// The latest event number.
    pub latest: u64,
}

/// Every booking (past ones included), over `conn`.
pub async fn list_all(conn: &Connection) -> Vec<Booking> {
    match conn
        .list_all(ListRequest {
            include_past: true,
            ..ListRequest::default()
        })
        .await
    {
        Ok(b) => b.bookings,
        other => panic!("list: {other:?}"),
    }
}

/// The stored state as a new connection sees it; proves the agent still answers.
pub async fn snapshot(agent: &AgentProcess) -> Snapshot {
    let conn = agent.connect().await;
    let bookings = list_all(&conn).await;
    let watcher = agent.connect().await;
    let (latest, _rx) = watcher.subscribe(None, false).await.expect("subscribe");
    Snapshot { bookings, latest }
}

/// The booking a change answered with, or a panic naming what came instead.
pub fn booked(r: Result<Response, gpubook_client::ClientError>) -> gpubook_proto::BookingResponse {
    match r {
        Ok(Response::Booking(b)) => b,
        other => panic!("expected a booking, got {other:?}"),
    }
}

/// The next event pushed on a subscription, skipping readings; fails after [`DEADLINE`].
pub async fn next_event(rx: &mut mpsc::UnboundedReceiver<Pushed>) -> Event {
    next_event_within(rx, DEADLINE).await
}

/// The next event pushed on a subscription, skipping readings; fails after `limit`.
pub async fn next_event_within(rx: &mut mpsc::UnboundedReceiver<Pushed>, limit: Duration) -> Event {
    let until = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Err(_) => panic!("no event within {limit:?}"),
            Ok(None) => panic!("the subscription ended"),
            Ok(Some(Pushed::Event(e))) => return e,
            Ok(Some(Pushed::Readings(_) | Pushed::Log(_))) => {}
            Ok(Some(Pushed::Error(e))) => panic!("the agent pushed an error: {e:?}"),
        }
    }
}

/// A socket to the agent that sends whatever bytes a test wants.
#[derive(Debug)]
pub struct RawConn {
    /// The connection.
    stream: UnixStream,
}

impl RawConn {
    /// Writes `bytes` as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// Writes `body` as one frame with its true length.
    pub async fn send_body(&mut self, body: &[u8]) {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.send_bytes(&frame).await;
    }

    /// Writes one client frame.
    pub async fn send(&mut self, frame: &ClientFrame) {
        self.send_body(&serde_json::to_vec(frame).expect("encode"))
            .await;
    }

    /// Writes a hello with `major`.
    pub async fn send_hello(&mut self, major: u32) {
        self.send(&ClientFrame::Hello(Hello {
            major,
            minor: PROTOCOL_MINOR,
            client: "raw-test".into(),
        }))
        .await;
    }

    /// Says hello with this build's protocol and expects a welcome.
    pub async fn handshake(&mut self) {
        self.send_hello(PROTOCOL_MAJOR).await;
        match self.recv().await {
            Some(AgentFrame::Welcome(_)) => {}
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    /// The next frame from the agent; `None` when it closed the connection.
    pub async fn recv(&mut self) -> Option<AgentFrame> {
        let body = tokio::time::timeout(DEADLINE, gpubook_proto::read_frame(&mut self.stream))
            .await
            .unwrap_or_else(|_| panic!("the agent sent nothing within {DEADLINE:?}"))
            .expect("a readable frame")?;
        Some(serde_json::from_slice(&body).expect("the agent's frame is an AgentFrame"))
    }

    /// Reads until the agent closes the connection, failing if it sends anything meanwhile.
    pub async fn expect_closed(&mut self) {
        if let Some(f) = self.recv().await {
            panic!("expected the agent to close the connection, got {f:?}");
        }
    }

    /// Closes the writing side, as a client that stops mid-frame does, then waits until the
    /// agent has closed its side too (so it has dealt with what it got); returns what it sent
    /// meanwhile.
    pub async fn close(mut self) -> Vec<AgentFrame> {
        let _ = self.stream.shutdown().await;
        let mut frames = Vec::new();
        while let Some(f) = self.recv().await {
            frames.push(f);
        }
        frames
    }
}

/// An agent inside the test process, on a clock the test moves. Stopped on drop.
#[derive(Debug)]
pub struct InProcessAgent {
    /// Holds the state directory and the socket.
    dir: TempDir,
    /// The agent's clock.
    pub clock: Arc<ManualClock>,
    /// The agent's state, to look at directly.
    pub state: Arc<State>,
    /// Tells the agent to stop.
    shutdown: Option<oneshot::Sender<()>>,
    /// The agent's task.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl InProcessAgent {
    /// Binds an agent with `gpus` simulated GPUs, its clock showing `now`, and runs it.
    pub async fn start(gpus: u32, now: DateTime<Utc>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Arc::new(ManualClock::new(now));
        let agent = bind(
            AgentConfig {
                state_dir: dir.path().join("state"),
                socket: dir.path().join("agent.sock"),
                gpus: Source::Sim(gpus),
                policy: None,
                server_name: SERVER.into(),
                shared: false,
                sample_interval: Duration::from_secs(1),
            },
            clock.clone(),
        )
        .await
        .expect("bind");
        let state = agent.state();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(agent.run(async move {
            let _ = rx.await;
        }));
        Self {
            dir,
            clock,
            state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The agent's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    /// A new client connection, after the handshake.
    pub async fn connect(&self) -> Connection {
        Connection::unix(&self.socket(), "agent-test")
            .await
            .expect("cannot connect to the in-process agent")
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

impl Drop for InProcessAgent {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
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

/// The agent's log so far, for failure messages.
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
