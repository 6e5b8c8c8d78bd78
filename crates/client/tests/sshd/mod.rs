//! A real OpenSSH server for tests, and what goes with it: real Unix users (`gpb-ssh-*`), a
//! client-side home with its own ~/.ssh, a real ssh-agent.
//!
//! Use it from a test file with `#[path = "sshd/mod.rs"] mod sshd;`. Each [`Sshd`] is its own
//! `/usr/sbin/sshd -D` on 127.0.0.1 at a free high port, with its own host key and config in a
//! temporary directory; it needs root (sshd switches to the user who logs in). Without root or
//! sshd a test says why and passes — or fails where `GPUBOOK_REQUIRE_SERVICES=1` or
//! `GPUBOOK_REQUIRE_ROOT_TESTS` is set (CI).

#![allow(dead_code)]

use gpubook_client::ssh::{Options, SshEnv};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long any awaited condition may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Whether missing services fail the test (CI) rather than skip it.
pub fn required() -> bool {
    std::env::var("GPUBOOK_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
        || std::env::var_os("GPUBOOK_REQUIRE_ROOT_TESTS").is_some()
}

/// Whether this test can run: root, sshd and the OpenSSH tools are there. Prints why not.
pub fn available(test: &str) -> bool {
    // SAFETY: getuid cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    let missing: Vec<&str> = [
        "/usr/sbin/sshd",
        "/usr/bin/ssh-keygen",
        "/usr/bin/ssh-agent",
        "/usr/bin/ssh-add",
    ]
    .into_iter()
    .filter(|p| !Path::new(p).exists())
    .collect();
    if root && missing.is_empty() {
        return true;
    }
    let why = if root {
        format!(
            "{} missing; run scripts/ssh-services.sh",
            missing.join(", ")
        )
    } else {
        "it starts sshd and creates Unix users, which needs root".to_string()
    };
    assert!(
        !required(),
        "services are required but {test} cannot run: {why}"
    );
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A key pair made by ssh-keygen: the private key at `path`, the public at `path.pub`.
pub fn keygen(path: &Path, passphrase: &str) -> PathBuf {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    sh(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "gpubook-test",
            "-f",
        ])
        .arg(path));
    path.to_path_buf()
}

/// `ssh-keygen -lf FILE`'s fingerprint (`SHA256:...`).
pub fn fingerprint_of(pub_file: &Path) -> String {
    sh(Command::new("ssh-keygen").arg("-lf").arg(pub_file))
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_string()
}

/// A running sshd on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Sshd {
    /// Config, host key, log.
    pub dir: TempDir,
    /// Its port, kept across restarts.
    pub port: u16,
    /// The server.
    child: Option<Child>,
}

impl Sshd {
    /// Starts one; `extra` comes first in its sshd_config, so it wins over the defaults.
    pub fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        keygen(&dir.path().join("host_ed25519"), "");
        let port = free_port();
        std::fs::write(
            dir.path().join("sshd_config"),
            format!(
                "{extra}\nPort {port}\nListenAddress 127.0.0.1\n\
                 HostKey {key}\nPidFile {pid}\n\
                 UsePAM yes\nPubkeyAuthentication yes\nPasswordAuthentication yes\n\
                 KbdInteractiveAuthentication yes\n\
                 AuthorizedKeysFile .ssh/authorized_keys\nStrictModes no\n\
                 PermitRootLogin no\nAllowTcpForwarding yes\nMaxAuthTries 30\n\
                 LogLevel VERBOSE\nPrintMotd no\nPerSourcePenalties no\n",
                key = dir.path().join("host_ed25519").display(),
                pid = dir.path().join("sshd.pid").display(),
            ),
        )
        .unwrap();
        let mut s = Self {
            dir,
            port,
            child: None,
        };
        s.restart();
        s
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    /// Starts it (again) on the same port and host key; waits for its banner.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "sshd already runs");
        // Older OpenSSH does not know PerSourcePenalties: drop it when `sshd -t` says so.
        let test = Command::new("/usr/sbin/sshd")
            .args(["-t", "-f"])
            .arg(self.config())
            .output()
            .unwrap();
        if !test.status.success()
            && String::from_utf8_lossy(&test.stderr).contains("PerSourcePenalties")
        {
            let text = std::fs::read_to_string(self.config()).unwrap();
            std::fs::write(self.config(), text.replace("PerSourcePenalties no\n", "")).unwrap();
        }
        sh(Command::new("/usr/sbin/sshd")
            .args(["-t", "-f"])
            .arg(self.config()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sshd.log"))
            .unwrap();
        self.child = Some(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(self.config())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start sshd"),
        );
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sshd exited with {status}:\n{}", self.log());
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 4];
                if s.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    return;
                }
            }
            assert!(
                Instant::now() < until,
                "sshd did not answer:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it with SIGKILL, and every session it serves (no goodbye to clients).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The per-connection sshd processes outlive the listener: end them first.
            for pid in descendants(c.id()) {
                // SAFETY: kill with a pid we found as this sshd's child.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Its host key's public file.
    pub fn host_pub(&self) -> PathBuf {
        self.dir.path().join("host_ed25519.pub")
    }

    /// Its host key's fingerprint, as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.host_pub())
    }

    /// The known_hosts line for it.
    pub fn known_hosts_line(&self) -> String {
        let public = std::fs::read_to_string(self.host_pub()).unwrap();
        let mut f = public.split_whitespace();
        format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            f.next().unwrap(),
            f.next().unwrap()
        )
    }

    /// Gives it a new host key (restarting it).
    pub fn new_host_key(&mut self) {
        self.stop();
        keygen(&self.dir.path().join("host_ed25519"), "");
        self.restart();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every process below `pid` (from /proc).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = read(&e.path().join("stat"));
        // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok())
        {
            parent_of.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (child, parent) in &parent_of {
            if *parent == p && !out.contains(child) {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out
}

/// A real Unix user.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
    /// Held from [`User::fresh`] until the last clone is gone: another test process that wants
    /// this account afresh waits instead of killing this one's sessions.
    _lock: Option<std::sync::Arc<std::fs::File>>,
}

/// An exclusive lock on the test account `name`, across processes (waits while another test
/// process holds it).
fn account_lock(name: &str) -> std::sync::Arc<std::fs::File> {
    let dir = Path::new("/run/gpubook-test-users");
    std::fs::create_dir_all(dir).unwrap();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(name))
        .unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function owns; it is released when the file closes.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {name}: {}", std::io::Error::last_os_error());
    std::sync::Arc::new(f)
}

fn passwd(name: &str) -> Option<Vec<String>> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(':')
            .map(str::to_string)
            .collect()
    })
}

impl User {
    /// The user `name` (must start with `gpb-ssh-`), created with a home if missing.
    pub fn ensure(name: &str) -> Self {
        assert!(name.starts_with("gpb-ssh-"), "test users are gpb-ssh-*");
        let mut tries = 0;
        while passwd(name).is_none() {
            let out = Command::new("useradd")
                .args(["-m", "-s", "/bin/bash", name])
                .output()
                .expect("run useradd");
            if out.status.success() {
                break;
            }
            // Another test process may hold the passwd lock, or have made the user meanwhile.
            tries += 1;
            assert!(
                tries < 40,
                "useradd {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        let f = passwd(name).unwrap();
        let u = User {
            name: name.to_string(),
            uid: f[2].parse().unwrap(),
            gid: f[3].parse().unwrap(),
            home: PathBuf::from(&f[5]),
            _lock: None,
        };
        if !u.home.is_dir() {
            std::fs::create_dir_all(&u.home).unwrap();
        }
        std::os::unix::fs::chown(&u.home, Some(u.uid), Some(u.gid)).unwrap();
        std::fs::set_permissions(&u.home, std::fs::Permissions::from_mode(0o755)).unwrap();
        u
    }

    /// A fresh user: made anew, with an empty home (for deployment tests).
    pub fn fresh(name: &str) -> Self {
        let lock = account_lock(name);
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", name])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("userdel").args(["-r", name]).output();
        Self {
            _lock: Some(lock),
            ..Self::ensure(name)
        }
    }

    /// Sets the password.
    pub fn set_password(&self, password: &str) {
        let mut c = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{}:{password}\n", self.name).as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success(), "chpasswd {}", self.name);
    }

    /// Lets the key whose public file is `pub_file` log in (added to the others: tests in
    /// other processes may use the same user at the same time).
    pub fn authorize(&self, pub_file: &Path) {
        let ssh = self.home.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let line = std::fs::read_to_string(pub_file).unwrap();
        let keys = ssh.join("authorized_keys");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&keys)
            .unwrap();
        // One write with O_APPEND: lines from several writers do not interleave.
        f.write_all(format!("{}\n", line.trim()).as_bytes())
            .unwrap();
        for p in [&ssh, &keys] {
            std::os::unix::fs::chown(p, Some(self.uid), Some(self.gid)).unwrap();
        }
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    /// Kills every process of this user (agents started over SSH).
    pub fn kill_all(&self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.name])
            .status();
    }
}

/// The client side: a temporary home with its own ~/.ssh (config, known_hosts, keys).
#[derive(Debug)]
pub struct ClientHome {
    /// The home.
    pub dir: TempDir,
    /// A key pair without passphrase, made at start.
    pub key: PathBuf,
}

impl ClientHome {
    /// A home with ~/.ssh and the key `id_ed25519` (no passphrase).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        std::fs::create_dir(&ssh).unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).unwrap();
        let key = keygen(&ssh.join("id_ed25519"), "");
        std::fs::write(ssh.join("config"), "").unwrap();
        Self { dir, key }
    }

    /// Its home directory.
    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// ~/.ssh/`name`.
    pub fn ssh(&self, name: &str) -> PathBuf {
        self.dir.path().join(".ssh").join(name)
    }

    /// Appends to ~/.ssh/config.
    pub fn config(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.ssh("config"))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Adds a `Host alias` block for `user` at `sshd` with `extra` lines.
    pub fn host(&self, alias: &str, sshd: &Sshd, user: &str, extra: &str) {
        self.config(&format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User {user}\n  ConnectTimeout 5\n{extra}\n",
            sshd.port
        ));
    }

    /// Trusts `sshd`'s host key.
    pub fn trust(&self, sshd: &Sshd) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.ssh("known_hosts"))
            .unwrap();
        f.write_all(sshd.known_hosts_line().as_bytes()).unwrap();
    }

    /// The SSH environment of this home (no ssh-agent unless given).
    pub fn env(&self, agent: Option<&SshAgent>) -> SshEnv {
        SshEnv {
            home: Some(self.home().to_path_buf()),
            config: Some(self.ssh("config")),
            // An ssh-agent socket that does not exist: none, whatever this process has.
            agent_socket: Some(
                agent
                    .map(|a| a.socket.clone())
                    .unwrap_or_else(|| self.home().join("no-agent.sock")),
            ),
        }
    }

    /// Options for this home: nothing accepted, no prompt, no keyring.
    pub fn options(&self, agent: Option<&SshAgent>) -> Options {
        Options {
            env: self.env(agent),
            ..Options::default()
        }
    }
}

impl Default for ClientHome {
    fn default() -> Self {
        Self::new()
    }
}

/// A real ssh-agent on its own socket, killed on drop.
#[derive(Debug)]
pub struct SshAgent {
    /// Holds the socket.
    _dir: TempDir,
    /// Its socket.
    pub socket: PathBuf,
    /// The agent.
    child: Child,
}

impl SshAgent {
    /// Starts one.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        // It prints its environment once the socket is ready.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            socket.exists(),
            "ssh-agent did not make {}",
            socket.display()
        );
        Self {
            _dir: dir,
            socket,
            child,
        }
    }

    /// `ssh-add KEY`.
    pub fn add(&self, key: &Path) {
        sh(Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null()));
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The built `gpubook-agent` binary: `$GPUBOOK_AGENT_BINARY`, else next to this test's target
/// directory (`cargo build -p gpubook-agent` or `cargo test --workspace` builds it), built on
/// demand when missing.
pub fn agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GPUBOOK_AGENT_BINARY") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
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
        sh(&mut cmd);
    }
    assert!(bin.is_file(), "no gpubook-agent at {}", bin.display());
    bin
}

/// A copy of `bin` that any user may run, in `dir` (a test's target directory may not be
/// reachable by other users).
pub fn runnable_copy(bin: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("gpubook-agent");
    std::fs::copy(bin, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// Polls `cond` until it holds, failing after [`DEADLINE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Reads a whole file as text, or "" when it is missing.
pub fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

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

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl KeyringSession {
    /// Starts one, or says why not (and fails where services are required).
    pub fn start(test: &str) -> Option<Self> {
        let missing: Vec<&str> = ["dbus-daemon", "dbus-send", "gnome-keyring-daemon"]
            .into_iter()
            .filter(|t| !have(t))
            .collect();
        if !missing.is_empty() {
            let msg = format!(
                "{} missing; run scripts/calendar-services.sh",
                missing.join(", ")
            );
            assert!(!required(), "services are required but {test}: {msg}");
            eprintln!("SKIPPED {test}: {msg}");
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
        wait_until("gnome-keyring-daemon on the bus", || {
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
