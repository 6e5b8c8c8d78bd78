//! What the desktop app's end-to-end tests need: the services they start (Xvfb, a D-Bus
//! session bus with dunst, a D-Bus monitor, agents, tauri-driver), the built binaries, and a
//! small W3C WebDriver client over HTTP ([`driver`]).
//!
//! The tests run when `GPUBOOK_E2E=1` (scripts/app-e2e.sh sets it after building the UI and
//! the app). A missing service fails them when `GPUBOOK_REQUIRE_SERVICES=1`, else skips them
//! (the rule of gpubook-testkit).

pub mod driver;
pub use driver::{Driver, Element, ELEMENT};

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gpubook_testkit::require::{missing, Need};
use serde_json::{json, Value};

/// Whether the E2E tests run (`GPUBOOK_E2E=1`); says why not otherwise.
pub fn enabled(test: &str) -> bool {
    let on = std::env::var("GPUBOOK_E2E").ok().as_deref() == Some("1");
    if !on {
        eprintln!(
            "SKIPPED: {test} runs with GPUBOOK_E2E=1 (scripts/app-e2e.sh builds and runs it)"
        );
    }
    on
}

/// Where screenshots and logs go: `$GPUBOOK_SCREENSHOTS`, else target/screenshots (made).
pub fn screenshots() -> PathBuf {
    let dir = std::env::var_os("GPUBOOK_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
        });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The built binaries an E2E test drives.
#[derive(Debug)]
pub struct Binaries {
    /// The desktop app.
    pub app: PathBuf,
    /// gpubook-agent.
    pub agent: PathBuf,
    /// The CLI.
    pub cli: PathBuf,
}

/// The built binaries, when each is there and every tool in `tools` is on PATH; otherwise
/// the testkit's rule (fail when required, else skip: `None`).
pub fn binaries_and_tools(test: &str, tools: &[&str]) -> Option<Binaries> {
    let b = Binaries {
        app: binary("GPUBOOK_APP_BINARY", "gpubook-app"),
        agent: binary("GPUBOOK_AGENT_BINARY", "gpubook-agent"),
        cli: binary("GPUBOOK_CLI_BINARY", "gpubook"),
    };
    for (what, p) in [
        ("the app", &b.app),
        ("gpubook-agent", &b.agent),
        ("gpubook", &b.cli),
    ] {
        if !p.is_file() {
            missing(
                test,
                Need::Service,
                &format!("{what} is not built at {}", p.display()),
                "run scripts/app-e2e.sh, which builds them",
            );
            return None;
        }
    }
    for tool in tools {
        if which(tool).is_none() {
            missing(
                test,
                Need::Service,
                &format!("{tool} is not installed"),
                "run scripts/setup-debian.sh (tauri-driver: cargo install tauri-driver --locked)",
            );
            return None;
        }
    }
    Some(b)
}

/// tauri-driver on `port` (its WebKitWebDriver on `port + 1000`), for an app on `display`
/// and the session bus `bus`, with `env` added to (and `WAYLAND_DISPLAY` removed from) the
/// app's environment; its output in `<log_name>-stdout.log` / `<log_name>-stderr.log` of `logs`. Returns
/// it with its URL, once it answers.
pub fn tauri_driver<K: AsRef<OsStr>, V: AsRef<OsStr>>(
    port: u16,
    display: &str,
    bus: &str,
    env: impl IntoIterator<Item = (K, V)>,
    logs: &Path,
    log_name: &str,
) -> (Proc, String) {
    let mut cmd = Command::new("tauri-driver");
    cmd.args([
        "--port",
        &port.to_string(),
        "--native-port",
        &(port + 1000).to_string(),
    ])
    .env("DISPLAY", display)
    .env("DBUS_SESSION_BUS_ADDRESS", bus)
    .env_remove("WAYLAND_DISPLAY")
    .stdout(std::fs::File::create(logs.join(format!("{log_name}-stdout.log"))).unwrap())
    .stderr(std::fs::File::create(logs.join(format!("{log_name}-stderr.log"))).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let p = Proc::spawn("tauri-driver", &mut cmd);
    let url = format!("http://127.0.0.1:{port}");
    until("tauri-driver", 20, || {
        reqwest::blocking::get(format!("{url}/status"))
            .ok()
            .map(drop)
    });
    (p, url)
}

/// A WebDriver session on the app `app` through the tauri-driver at `url`; panics with the
/// driver's log (in `logs`) when none opens.
pub fn open_app(url: &str, app: &Path, logs: &Path) -> Driver {
    Driver::new(url, app).unwrap_or_else(|e| {
        panic!(
            "no WebDriver session: {e}; driver log: {}",
            std::fs::read_to_string(logs.join("app-stderr.log")).unwrap_or_default()
        )
    })
}

/// Waits until the calendar is interactive (`body[data-ready=true]`).
pub fn wait_ready(d: &Driver, secs: u64) {
    until("body[data-ready=true]", secs, || {
        (d.exec("return document.body.dataset.ready === 'true'", json!([])) == json!(true))
            .then_some(())
    });
}

/// A real agent with 4 simulated GPUs named `name`, serving on `dir/NAME.sock` (shared mode
/// when `shared`), its policy warning owners 15 minutes before a slot ends; its log in
/// `logs`. Returns it with its socket once it answers.
pub fn start_agent(
    bin: &Path,
    dir: &Path,
    name: &str,
    shared: bool,
    logs: &Path,
) -> (Proc, PathBuf) {
    let socket = dir.join(format!("{name}.sock"));
    let policy = dir.join("policy.toml");
    // Root is admin whatever the policy says (the agent makes uid 0 admin). Owners hear of a
    // slot's end 15 minutes before it, so a 15-minute slot is warned at once.
    std::fs::write(
        &policy,
        "admins = [\"nobody-admin\"]\nend_warning = \"15m\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--state-dir")
        .arg(dir.join(format!("{name}-state")))
        .arg("--socket")
        .arg(&socket)
        .args(["--gpus", "sim:4", "--name", name, "--sample-secs", "1"])
        .arg("--policy")
        .arg(&policy)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(logs.join(format!("{name}.log"))).unwrap());
    if shared {
        cmd.arg("--shared");
    }
    let p = Proc::spawn(name, &mut cmd);
    until("the agent's socket", 20, || {
        std::os::unix::net::UnixStream::connect(&socket)
            .ok()
            .map(drop)
    });
    (p, socket)
}

/// The time as the agent and the CLI write it (RFC 3339, seconds, `Z`).
pub fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The bookings of `gpubook ls --json`'s answer.
pub fn bookings(v: &Value) -> Vec<Value> {
    v.get("bookings")
        .and_then(Value::as_array)
        .or_else(|| v.as_array())
        .cloned()
        .unwrap_or_default()
}

/// The point on the calendar (viewport pixels) of GPU `gpu` of `server` at `t`, from the
/// calendar's own geometry.
pub fn point(d: &Driver, server: &str, gpu: u32, t: chrono::DateTime<chrono::Utc>) -> (f64, f64) {
    let p = d.exec(
        "return window.__gpubook && window.__gpubook.pointFor(arguments[0], arguments[1], arguments[2]);",
        json!([server, gpu, iso(t)]),
    );
    (
        p["x"]
            .as_f64()
            .unwrap_or_else(|| panic!("no point for GPU {gpu} of {server} at {t}: {p}")),
        p["y"].as_f64().unwrap(),
    )
}

/// The program `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The build's binaries: `$GPUBOOK_APP_BINARY` etc., else next to this test's target dir.
pub fn binary(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let exe = std::env::current_exe().expect("the test's path");
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .expect("a target directory")
}

/// A child process killed (and reaped) on drop.
#[derive(Debug)]
pub struct Proc {
    /// What it is, for messages.
    pub what: String,
    /// The process.
    pub child: Child,
}

impl Proc {
    /// Starts `cmd`.
    pub fn spawn(what: &str, cmd: &mut Command) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Self {
            what: what.into(),
            child,
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first, so that it can stop what it started (tauri-driver its WebDriver).
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `f` holds, or panics after `secs` seconds naming `what`.
pub fn until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An X server on a display number it picks itself (free, whoever else runs one).
pub fn xvfb() -> (Proc, String) {
    let mut p = Proc::spawn(
        "Xvfb",
        Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1600x1000x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut line = String::new();
    BufReader::new(p.child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("read Xvfb's display number");
    let n: u32 = line.trim().parse().expect("a display number");
    (p, format!(":{n}"))
}

/// A D-Bus session bus of its own; returns it and its address.
pub fn session_bus() -> (Proc, String) {
    let mut p = Proc::spawn(
        "dbus-daemon",
        Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut line = String::new();
    BufReader::new(p.child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("read the bus address");
    (p, line.trim().to_string())
}

/// Whether `name` has an owner on the bus at `addr`.
pub fn bus_has(addr: &str, name: &str) -> bool {
    Command::new("dbus-send")
        .env("DBUS_SESSION_BUS_ADDRESS", addr)
        .args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            &format!("string:{name}"),
        ])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
}

/// The resident memory of `pid` and all its descendants, in bytes (from /proc).
pub fn tree_rss(pid: u32) -> u64 {
    descendants(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}

/// The resident memory of `pid` alone, in bytes.
pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// `pid` and every process below it.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                    if let Some(pp) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                        parents.push((p, pp));
                    }
                }
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let cur = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    tree
}

/// The proportional set size (shared pages split among their users) of `pid` and all its
/// descendants, in bytes (from /proc/PID/smaps_rollup): a fairer total than RSS, which
/// counts the shared WebKit libraries once per process.
pub fn tree_pss(pid: u32) -> u64 {
    descendants(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}

/// Every running process whose executable is `exe`.
pub fn pids_of(exe: &Path) -> Vec<u32> {
    let Ok(exe) = std::fs::canonicalize(exe) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let p: u32 = e.file_name().to_string_lossy().parse().ok()?;
            (std::fs::read_link(format!("/proc/{p}/exe")).ok()? == exe).then_some(p)
        })
        .collect()
}

/// The pid of the running process whose executable is `exe`.
pub fn pid_of(exe: &Path) -> Option<u32> {
    let exe = std::fs::canonicalize(exe).ok()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let p: u32 = e.file_name().to_string_lossy().parse().ok()?;
        (std::fs::read_link(format!("/proc/{p}/exe")).ok()? == exe).then_some(p)
    })
}
