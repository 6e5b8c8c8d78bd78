//! Real receivers for the notification tests: aiosmtpd's SMTP server and an HTTP server on
//! 127.0.0.1, in one Python process (`receivers.py`), which writes every mail (parsed by
//! Python's own e-mail parser) and every POST as one JSON line with its arrival time.
//!
//! The Python with aiosmtpd comes from `. scripts/mail-services.sh` (GPUBOOK_MAIL_PYTHON).
//! Without it a test skips, unless GPUBOOK_REQUIRE_SERVICES is set (CI): then it fails.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The running receivers. Stopped on drop.
pub struct Receivers {
    /// The Python process.
    child: Child,
    /// The SMTP port.
    pub smtp: u16,
    /// The HTTP port.
    pub http: u16,
    /// Where they write what they received.
    log: PathBuf,
    /// Holds `log`.
    _dir: tempfile::TempDir,
}

impl Receivers {
    /// Starts them; `None` (the test skips) when aiosmtpd is not installed and CI does not
    /// require it.
    pub fn start(test: &str) -> Option<Self> {
        let python = match std::env::var("GPUBOOK_MAIL_PYTHON") {
            Ok(p) => p,
            Err(_) => {
                assert!(
                    std::env::var_os("GPUBOOK_REQUIRE_SERVICES").is_none(),
                    "GPUBOOK_REQUIRE_SERVICES=1 but GPUBOOK_MAIL_PYTHON is not set: \
                     . scripts/mail-services.sh"
                );
                eprintln!("{test}: skipped (no aiosmtpd: . scripts/mail-services.sh)");
                return None;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("received.jsonl");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("notify_support")
            .join("receivers.py");
        let mut child = Command::new(python)
            .arg(&script)
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the receivers");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut port = |name: &str| -> u16 {
            let line = lines.next().expect("a port line").expect("read");
            let (n, p) = line.split_once(' ').expect("NAME PORT");
            assert_eq!(n, name, "{line}");
            p.trim().parse().expect("a port")
        };
        let smtp = port("smtp");
        let http = port("http");
        Some(Self {
            child,
            smtp,
            http,
            log,
            _dir: dir,
        })
    }

    /// Everything received so far, oldest first.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The mails received so far.
    pub fn mails(&self) -> Vec<Value> {
        self.of_type("mail")
    }

    /// The POSTs answered so far.
    pub fn posts(&self) -> Vec<Value> {
        self.of_type("post")
    }

    /// The POSTs to a hanging path so far.
    pub fn hangs(&self) -> Vec<Value> {
        self.of_type("hang")
    }

    fn of_type(&self, t: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|v| v["type"] == t)
            .collect()
    }

    /// A webhook URL on the HTTP receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// The policy's `[mail]` table for the SMTP receiver.
    pub fn mail_policy(&self) -> String {
        format!(
            "[mail]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             sender = \"gpubook <gpubook@lab.test>\"\n",
            self.smtp
        )
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
