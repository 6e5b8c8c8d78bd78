//! A private D-Bus session bus with an unlocked gnome-keyring on it, in a temporary home,
//! for tests of code that keeps secrets in the OS keyring.

use crate::wait::wait_until_blocking;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use tempfile::TempDir;

/// A private D-Bus session bus with an unlocked gnome-keyring on it, in a temporary home;
/// daemons killed on drop. Code that uses the keyring runs in a child process whose
/// environment is [`KeyringSession::env`] (the keyring library finds the bus through
/// `DBUS_SESSION_BUS_ADDRESS`, which a threaded test process must not change for itself).
#[derive(Debug)]
pub struct KeyringSession {
    /// The keyring's home.
    pub home: TempDir,
    /// The bus address.
    pub address: String,
    /// dbus-daemon and gnome-keyring-daemon.
    children: Vec<Child>,
}

impl KeyringSession {
    /// Starts one, or says why not (the crate's require-or-skip rule).
    pub fn start(test: &str) -> Option<Self> {
        if !crate::require::require_tools(
            test,
            &["dbus-daemon", "dbus-send", "gnome-keyring-daemon"],
            "run `. ./scripts/calendar-services.sh` first",
        ) {
            return None;
        }
        let home = tempfile::tempdir().unwrap();
        let runtime = home.path().join("run");
        std::fs::create_dir(&runtime).unwrap();
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut s = Self {
            home,
            address: String::new(),
            children: Vec::new(),
        };
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!(
                "--address=unix:path={}",
                runtime.join("bus").display()
            ))
            .envs(s.env())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let mut address = String::new();
        BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        s.children.push(bus);
        s.address = address.trim().to_string();
        assert!(
            s.address.starts_with("unix:"),
            "dbus-daemon said {address:?}"
        );
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .envs(s.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gnome-keyring-daemon");
        // The login keyring is created with this password and unlocked.
        keyring
            .stdin
            .take()
            .unwrap()
            .write_all(b"keyring password")
            .unwrap();
        s.children.push(keyring);
        let address = s.address.clone();
        wait_until_blocking("gnome-keyring-daemon on the bus", || {
            let owned = Command::new("dbus-send")
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.secrets",
                ])
                .env("DBUS_SESSION_BUS_ADDRESS", &address)
                .output()
                .unwrap();
            String::from_utf8_lossy(&owned.stdout).contains("boolean true")
        });
        Some(s)
    }

    /// The environment of a process that uses this keyring.
    pub fn env(&self) -> Vec<(String, PathBuf)> {
        let h = self.home.path();
        let mut v = vec![
            ("HOME".to_string(), h.to_path_buf()),
            ("XDG_DATA_HOME".to_string(), h.join("data")),
            ("XDG_CONFIG_HOME".to_string(), h.join("config")),
            ("XDG_STATE_HOME".to_string(), h.join("state")),
            ("XDG_RUNTIME_DIR".to_string(), h.join("run")),
        ];
        if !self.address.is_empty() {
            v.push((
                "DBUS_SESSION_BUS_ADDRESS".to_string(),
                PathBuf::from(&self.address),
            ));
        }
        v
    }

    /// Runs the ignored test `name` of this test binary in this session; returns its output
    /// after asserting it passed and printed `marker`.
    pub fn run_child(&self, name: &str, marker: &str) -> String {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--ignored", "--nocapture"])
            .envs(self.env())
            .env("GPUBOOK_KEYRING_CHILD", "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "the keyring child failed:\n{text}");
        assert!(text.contains(marker), "{text}");
        text
    }

    /// Every byte gnome-keyring stored.
    pub fn stored(&self) -> Vec<u8> {
        std::fs::read_dir(self.home.path().join("data/keyrings"))
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|e| std::fs::read(e.path()).unwrap_or_default())
            .collect()
    }
}

impl Drop for KeyringSession {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
