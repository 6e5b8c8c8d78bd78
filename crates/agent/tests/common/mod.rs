//! What the agent's integration tests share beyond gpubook-testkit (whose agents, in-process
//! and as a child process, and wait-until they use): the slot grid, state seeded before an
//! agent starts, snapshots, events, and a raw socket for frames the client library would
//! never send.

// Each test file uses its own part of this module (re-exports included).
#![allow(dead_code, unused_imports)]

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use gpubook_agent::clock::SystemClock;
use gpubook_agent::gpu::sim::SimReader;
use gpubook_agent::gpu::GpuReader;
use gpubook_agent::state::State;
use gpubook_agent::store::Store;
use gpubook_client::{Connection, Pushed};
use gpubook_core::time::floor_to;
use gpubook_core::{Booking, Policy};
use gpubook_proto::{
    AgentFrame, BookRequest, ClientFrame, Event, GpuChoice, Hello, ListRequest, Request,
    WhenChoice, PROTOCOL_MAJOR, PROTOCOL_MINOR,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

pub use gpubook_testkit::agent::{AgentProcess, InProcessAgent, SERVER};
pub use gpubook_testkit::bookings::booked;
pub use gpubook_testkit::{wait_until, DEADLINE};

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

/// A directory for an agent, with `f` applied to its state first (as another user, say).
pub fn seeded(gpus: u32, f: impl FnOnce(&State)) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    seed(&dir.path().join("state"), gpus, Policy::default(), f);
    dir
}

/// A raw socket to an agent, before any handshake.
pub async fn raw(agent: &AgentProcess) -> RawConn {
    RawConn {
        stream: UnixStream::connect(agent.socket())
            .await
            .expect("cannot connect to the agent's socket"),
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
