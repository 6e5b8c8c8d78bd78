//! A real agent in its own process, for the link and many-server tests: this test binary
//! started again with [`CHILD_ENV`] set runs `gpubook_agent::serve` (what `gpubook-agent
//! serve` runs) on a temporary state directory, so a test can SIGKILL it mid-stream and start
//! it again on the same state. (A dev-dependency's binary has no `CARGO_BIN_EXE_` path, so
//! the test binary plays the agent binary.)
//!
//! Each test file that uses it declares the child's entry point:
//! `#[test] fn agent_child() { agent::child_main() }`.

#![allow(dead_code)]

use gpubook_client::Connection;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Set in the child: the agent's directory.
const CHILD_ENV: &str = "GPUBOOK_TEST_AGENT_DIR";
/// Set in the child: how many simulated GPUs.
const GPUS_ENV: &str = "GPUBOOK_TEST_AGENT_GPUS";
/// Set in the child: the server's name.
const NAME_ENV: &str = "GPUBOOK_TEST_AGENT_NAME";

/// How long any awaited condition may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The child's body: serves until killed. Does nothing when run as an ordinary test.
pub fn child_main() {
    let Some(dir) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    let gpus: u32 = std::env::var(GPUS_ENV).unwrap().parse().unwrap();
    let name = std::env::var(NAME_ENV).unwrap();
    let config = gpubook_agent::AgentConfig {
        state_dir: dir.join("state"),
        socket: dir.join("agent.sock"),
        gpus: gpubook_agent::gpu::Source::Sim(gpus),
        policy: None,
        server_name: name,
        shared: false,
        sample_interval: Duration::from_millis(500),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    if let Err(e) = rt.block_on(gpubook_agent::serve(
        config,
        Arc::new(gpubook_agent::clock::SystemClock),
    )) {
        eprintln!("agent child: {e:#}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// The agent process, killed on drop.
#[derive(Debug)]
pub struct ChildAgent {
    /// State, socket and log.
    dir: TempDir,
    /// Simulated GPUs.
    gpus: u32,
    /// Its name.
    name: String,
    /// The process while it runs.
    child: Option<Child>,
}

impl ChildAgent {
    /// Starts an agent named `name` with `gpus` simulated GPUs, ready for clients.
    pub async fn start(name: &str, gpus: u32) -> Self {
        let mut a = Self {
            dir: tempfile::tempdir().unwrap(),
            gpus,
            name: name.into(),
            child: None,
        };
        a.restart().await;
        a
    }

    /// Its socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    /// What it wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Starts it (again, on the same state) and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "agent_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, self.dir.path())
            .env(GPUS_ENV, self.gpus.to_string())
            .env(NAME_ENV, &self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("the agent exited with {s}:\n{}", self.log());
            }
            if Connection::unix(&self.socket(), "ready-probe")
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < until,
                "the agent did not come up:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, no chance to clean up; reaped.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A connection as the test's user.
    pub async fn connect(&self) -> Connection {
        Connection::unix(&self.socket(), "link-test")
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log()))
    }
}

impl Drop for ChildAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `cond` until it holds, failing after [`DEADLINE`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
