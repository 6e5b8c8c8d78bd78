//! Real Unix users for tests (created as root, reused when they exist), and running
//! programs as them.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    _lock: Option<Arc<std::fs::File>>,
}

impl PartialEq for User {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.uid, self.gid, &self.home)
            == (&other.name, other.uid, other.gid, &other.home)
    }
}

impl Eq for User {}

/// Serialises user and group creation within one test binary (useradd locks /etc/passwd).
static USERS: Mutex<()> = Mutex::new(());

/// `getent passwd NAME`'s fields.
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

/// The user `name`, not root, with a home they own and /bin/bash as login shell: created if
/// missing, reused if not. Needs root.
pub fn ensure_user(name: &str) -> User {
    let _one_at_a_time = USERS.lock().unwrap_or_else(|p| p.into_inner());
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
    let f = passwd(name).expect("the user exists now");
    let user = User {
        name: name.to_string(),
        uid: f[2].parse().expect("uid"),
        gid: f[3].parse().expect("gid"),
        home: PathBuf::from(&f[5]),
        _lock: None,
    };
    assert_ne!(user.uid, 0, "{name} must not be root");
    if f[6] != "/bin/bash" {
        let out = Command::new("usermod")
            .args(["-s", "/bin/bash", name])
            .output()
            .expect("run usermod");
        assert!(out.status.success(), "usermod -s /bin/bash {name} failed");
    }
    if !user.home.is_dir() {
        std::fs::create_dir_all(&user.home).expect("create the user's home");
        std::os::unix::fs::chown(&user.home, Some(user.uid), Some(user.gid)).expect("chown");
    }
    user
}

/// [`ensure_user`], also a member of each group in `groups` (created if missing).
pub fn ensure_user_in(name: &str, groups: &[&str]) -> User {
    let user = ensure_user(name);
    for g in groups {
        ensure_group(g);
        let out = Command::new("usermod")
            .args(["-a", "-G", g, name])
            .output()
            .expect("run usermod");
        assert!(out.status.success(), "usermod -a -G {g} {name} failed");
    }
    user
}

/// The Unix group `name`, created if missing.
pub fn ensure_group(name: &str) {
    let _one_at_a_time = USERS.lock().unwrap_or_else(|p| p.into_inner());
    let exists = |n: &str| {
        Command::new("getent")
            .args(["group", n])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !exists(name) {
        let out = Command::new("groupadd").arg(name).output();
        assert!(exists(name), "groupadd {name} failed: {out:?}");
    }
}

/// An exclusive lock on the test account `name`, across processes (waits while another test
/// process holds it).
fn account_lock(name: &str) -> Arc<std::fs::File> {
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
    Arc::new(f)
}

impl User {
    /// An SSH test user `name` (must start with `gpb-ssh-`): [`ensure_user`], with a home
    /// every user may traverse.
    pub fn ensure(name: &str) -> Self {
        assert!(name.starts_with("gpb-ssh-"), "test users are gpb-ssh-*");
        let u = ensure_user(name);
        std::os::unix::fs::chown(&u.home, Some(u.uid), Some(u.gid)).unwrap();
        std::fs::set_permissions(&u.home, std::fs::Permissions::from_mode(0o755)).unwrap();
        u
    }

    /// A fresh SSH test user: made anew, with an empty home (for deployment tests).
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

    /// (uid, primary gid).
    pub fn ids(&self) -> (u32, u32) {
        (self.uid, self.gid)
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

/// Runs `cmd` as `user`, returning (status code, stdout, stderr).
pub fn run_as(user: &User, cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd
        .uid(user.uid)
        .gid(user.gid)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} as {}: {e}", user.name));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether everyone may traverse to `path` and run it.
pub fn others_can_run(path: &Path) -> bool {
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode()).ok();
    if mode(path).is_none_or(|m| m & 0o005 != 0o005) {
        return false;
    }
    path.ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
        .all(|p| mode(p).is_some_and(|m| m & 0o001 != 0))
}

/// A copy of `bin` named `name` in `dir`, that any user may run (a build directory may be
/// closed to other users).
pub fn runnable_copy_as(bin: &Path, dir: &Path, name: &str) -> PathBuf {
    let copy = dir.join(name);
    std::fs::copy(bin, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", bin.display()));
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// `bin` itself when every user may run it, else [`runnable_copy_as`] into `dir` (once).
pub fn runnable_by_all(bin: &Path, dir: &Path) -> PathBuf {
    if others_can_run(bin) {
        return bin.to_path_buf();
    }
    let name = bin.file_name().expect("a file name").to_string_lossy();
    let copy = dir.join(&*name);
    if copy.exists() {
        return copy;
    }
    runnable_copy_as(bin, dir, &name)
}
