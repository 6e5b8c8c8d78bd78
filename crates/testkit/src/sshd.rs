//! A real OpenSSH server for tests, and what goes with it: a client-side home with its own
//! ~/.ssh, a real ssh-agent, ssh-keygen. Test users come from [`crate::users`].
//!
//! Each [`Sshd`] is its own `/usr/sbin/sshd -D` on 127.0.0.1 at a free high port, with its
//! own host key and config in a temporary directory; it needs root (sshd switches to the
//! user who logs in). A test asks [`available`] first (the crate's require-or-skip rule).

use gpubook_client::ssh::{Options, SshEnv};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub use crate::agent::{agent_binary, runnable_copy};
pub use crate::keyring::KeyringSession;
pub use crate::users::User;
pub use crate::wait::{wait_until_blocking as wait_until, DEADLINE};

/// Whether this test can run: root, sshd and the OpenSSH tools are there. Otherwise the
/// crate's rule decides (fail when required, else say why it is skipped).
pub fn available(test: &str) -> bool {
    crate::require::require_root(test)
        && crate::require::require_tools(
            test,
            &[
                "/usr/sbin/sshd",
                "/usr/bin/ssh-keygen",
                "/usr/bin/ssh-agent",
                "/usr/bin/ssh-add",
            ],
            "run `. ./scripts/ssh-services.sh` first",
        )
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

/// Reads a whole file as text, or "" when it is missing.
pub fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}
