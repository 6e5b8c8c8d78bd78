//! A real Xandikos (a second CalDAV server, from PyPI, installed by
//! scripts/calendar-services.sh) on 127.0.0.1 with its storage in a temporary directory. It
//! has no accounts: any credentials pass. A test asks
//! [`crate::require_python`]`(test, "xandikos")` first.

use crate::radicale::python;
use crate::sshd::free_port;
use crate::wait::DEADLINE;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A running Xandikos, killed on drop (before its directory goes).
#[derive(Debug)]
pub struct Xandikos {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl Xandikos {
    /// Starts one whose current-user-principal is `principal` (e.g. "/alice/"); `defaults`
    /// creates the default calendar and address book.
    pub async fn start(principal: &str, defaults: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("xandikos.log")).expect("log file");
        let mut cmd = Command::new(python());
        cmd.args(["-m", "xandikos.web", "-l", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg("-d")
            .arg(dir.path().join("data"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--current-user-principal", principal, "--no-detect-systemd"]);
        if defaults {
            cmd.arg("--defaults");
        } else {
            std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start Xandikos");
        let mut x = Self { child, dir, port };
        x.wait_up().await;
        x
    }

    async fn wait_up(&mut self) {
        let until = Instant::now() + DEADLINE;
        while reqwest::get(self.base()).await.is_err() {
            if let Some(s) = self.child.try_wait().expect("Xandikos's status") {
                panic!("Xandikos exited with {s}:\n{}", self.log());
            }
            assert!(
                Instant::now() < until,
                "Xandikos did not answer:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its address, `http://127.0.0.1:PORT/`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Where it keeps the collections (`user/calendars/...` below it).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// What it wrote to its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("xandikos.log")).unwrap_or_default()
    }
}

impl Drop for Xandikos {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
