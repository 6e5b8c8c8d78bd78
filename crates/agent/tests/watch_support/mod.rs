//! What the GPU-watch tests share: the real agent binary started with any arguments (a
//! policy, a replay), bookings seeded for another user at any time, and the events seen.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use crate::common::SERVER;
use chrono::{DateTime, Utc};
use gpubook_agent::clock::SystemClock;
use gpubook_agent::state::State;
use gpubook_agent::store::Store;
use gpubook_client::{Connection, Pushed};
use gpubook_core::{
    Actor, BookingId, Gpu, GpuSelection, GpuUuid, Interval, Op, Policy, Role, When,
};
use gpubook_proto::{Event, EventKind, Readings};
use gpubook_testkit::agent::{await_ready, read_log};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::mpsc::UnboundedReceiver;

/// Books `gpus` for `owner` over `[start, end)` exactly (no grid, a start in the past
/// allowed) in the state at `state_dir` over `inventory`, before an agent runs there.
pub fn seed_booking(
    state_dir: &Path,
    inventory: Vec<Gpu>,
    owner: &str,
    gpus: Vec<GpuUuid>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> BookingId {
    std::fs::create_dir_all(state_dir).expect("state dir");
    let store = Store::open(&state_dir.join("agent.db")).expect("store");
    let policy = Policy {
        granularity_secs: 1,
        ..Policy::default()
    };
    let state =
        State::load(store, inventory, policy, std::sync::Arc::new(SystemClock)).expect("state");
    let owner = Actor {
        user: owner.into(),
        role: Role::User,
    };
    let op = Op::Book {
        gpus: GpuSelection::Named(gpus),
        when: When::At(Interval { start, end }),
        title: "seeded".into(),
        job: None,
    };
    // Decided as of its start, so a start in the past is taken as it is.
    let events = state
        .decide(|plan, _| plan.apply(&owner, op, start).expect("the seeded booking"))
        .expect("seeded");
    events[0].booking.id
}

/// The real agent binary with the arguments a test gives, in a temporary directory. Killed
/// on drop.
#[derive(Debug)]
pub struct Agent {
    /// State directory, socket, log.
    dir: TempDir,
    /// The running agent.
    child: Option<Child>,
    /// When it was started (just before the process was spawned).
    pub spawned: Instant,
    /// When it first answered a handshake.
    pub ready: Instant,
}

impl Agent {
    /// The state directory inside `dir`.
    pub fn state_dir_in(dir: &TempDir) -> PathBuf {
        dir.path().join("state")
    }

    /// Starts `gpubook-agent serve` over `dir` with `args` after the usual ones and waits
    /// until it answers.
    pub async fn start(dir: TempDir, args: &[&str]) -> Self {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("agent.log"))
            .expect("agent log");
        let spawned = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
            .arg("serve")
            .arg("--state-dir")
            .arg(Self::state_dir_in(&dir))
            .arg("--socket")
            .arg(dir.path().join("agent.sock"))
            .args(["--name", SERVER])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start gpubook-agent");
        let mut agent = Self {
            dir,
            child: Some(child),
            spawned,
            ready: spawned,
        };
        let (socket, log) = (agent.socket(), agent.path("agent.log"));
        await_ready(&mut agent.child, &socket, || read_log(&log)).await;
        agent.ready = Instant::now();
        agent
    }

    /// The agent's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    /// The agent's state directory.
    pub fn state_dir(&self) -> PathBuf {
        Self::state_dir_in(&self.dir)
    }

    /// A file in the agent's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// What the agent wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Kills the agent with SIGKILL (no chance to write anything more) and gives back its
    /// directory, to start another agent on the same state.
    pub fn kill(mut self) -> TempDir {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// A new client connection, after the handshake.
    pub async fn connect(&self) -> Connection {
        Connection::unix(&self.socket(), "watch-test")
            .await
            .unwrap_or_else(|e| panic!("cannot connect: {e}\n{}", self.log()))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A subscription (events from the first, and readings) and everything it delivered.
#[derive(Debug)]
pub struct Seen {
    /// The agent's pushes.
    rx: UnboundedReceiver<Pushed>,
    /// Every event so far, in order.
    pub events: Vec<Event>,
    /// Every reading so far, in order.
    pub readings: Vec<Readings>,
    /// Kept open: the subscription lives with its connection.
    _conn: Connection,
}

impl Seen {
    /// Subscribes to everything from the first event on, with readings.
    pub async fn subscribe(agent: &Agent) -> Self {
        let conn = agent.connect().await;
        let (_, rx) = conn.subscribe(Some(0), true).await.expect("subscribe");
        Self {
            rx,
            events: Vec::new(),
            readings: Vec::new(),
            _conn: conn,
        }
    }

    /// Takes pushes until `done` holds for what was seen; fails after `limit`.
    pub async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) {
        let until = tokio::time::Instant::now() + limit;
        while !done(self) {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Err(_) => panic!(
                    "timed out after {limit:?} waiting for {what}; events: {:#?}",
                    self.events
                ),
                Ok(None) => panic!("the subscription ended waiting for {what}"),
                Ok(Some(Pushed::Event(e))) => self.events.push(e),
                Ok(Some(Pushed::Readings(r))) => self.readings.push(r),
                Ok(Some(Pushed::Log(_))) => {}
                Ok(Some(Pushed::Error(e))) => panic!("the agent pushed an error: {e:?}"),
            }
        }
    }

    /// The events of `kind` about booking `id`.
    pub fn of(&self, kind: EventKind, id: BookingId) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.kind == kind && e.booking.id == id)
            .collect()
    }

    /// Readings seen so far in which GPU `gpu` has the process `pid`.
    pub fn readings_with(&self, gpu: &GpuUuid, pid: u32) -> usize {
        self.readings
            .iter()
            .filter(|r| {
                r.gpus
                    .iter()
                    .any(|g| g.uuid == *gpu && g.processes.iter().any(|p| p.pid == pid))
            })
            .count()
    }
}
