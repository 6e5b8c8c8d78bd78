//! `gpubook-agent install --system`: what an admin runs once (with sudo) to make the agent a
//! system service every lab user reaches.
//!
//! It puts the binary in `/usr/local/bin`, a systemd unit in `/etc/systemd/system`, the state
//! in `/var/lib/gpubook` (root only) and the socket in `/run/gpubook` (everyone may connect;
//! who they are comes from the socket's peer credentials). An existing policy file is kept
//! and checked: it must parse, and only root may be able to change it (it says who is an
//! admin). A missing one is written as a commented example with no limits. Everything is
//! checked before anything is written, so a refused install changes nothing. Running it
//! again upgrades the binary in place and restarts the service: the unit's
//! `KillMode=process` leaves running jobs alone, and the new agent adopts them.
//!
//! # Hardening the unit leaves out
//! The jobs are the agent's children: they run in the unit's cgroup and inherit its process
//! state (namespaces, mounts, seccomp filters, capabilities, rlimits, umask, OOM score), and
//! `KillMode=process` keeps them running across agent restarts. So the unit may only carry
//! what jobs do not inherit, or what the job spawn resets. Left out on purpose:
//! - `PrivateTmp`, `ProtectHome`, `ProtectSystem`, `ReadOnlyPaths`, `InaccessiblePaths`,
//!   `TemporaryFileSystem`, `PrivateDevices`, `DevicePolicy`/`DeviceAllow`, `ProtectProc`,
//!   `ProcSubset`, `PrivateUsers`, `PrivateNetwork`, `ProtectHostname`, `ProtectClock`,
//!   `ProtectKernelTunables`, `ProtectKernelModules`, `ProtectKernelLogs`: a mount or other
//!   namespace (or a cgroup device filter) jobs would share: they need the real `/tmp`, their
//!   home, the GPUs' device nodes, `/proc` to see their processes, the network.
//! - `ProtectControlGroups`: also a read-only `/sys/fs/cgroup`, where the agent makes each
//!   job's cgroup.
//! - `NoNewPrivileges`: inherited across exec; jobs may need setuid programs (`sudo`, `ping`,
//!   `fusermount`).
//! - `CapabilityBoundingSet`, `AmbientCapabilities`: the bounding set is inherited; the agent
//!   needs `CAP_SETUID`/`CAP_SETGID` to run jobs as their owners, and jobs that run setuid
//!   programs need those programs' capabilities.
//! - `SystemCallFilter`, `SystemCallArchitectures`, `MemoryDenyWriteExecute`,
//!   `LockPersonality`, `RestrictNamespaces`, `RestrictRealtime`, `RestrictSUIDSGID`,
//!   `RestrictAddressFamilies`, `IPAddressDeny`: seccomp or BPF filters on every process of
//!   the unit; jobs JIT code (CUDA, PyTorch, JAX), use containers, talk to the network.
//! - `UMask`: inherited (the job spawn puts 0022 back), and of no use to the agent: it gives
//!   everything it makes an explicit mode and keeps its state in a 0700 directory.
//! - `MemoryMax`, `CPUQuota`, `IOWeight` and other cgroup limits: they bound the unit's whole
//!   cgroup, every job included.
//! - `User`, `DynamicUser`: the agent runs as root, to run jobs as their owners.

use gpubook_core::Policy;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The unit's name.
pub const UNIT: &str = "gpubook-agent.service";

/// What to install, and where.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Everything is written below this directory: `/` for a real install, a temporary
    /// directory for a test or a package build (like `DESTDIR`).
    pub root: PathBuf,
    /// The agent binary to install (normally the running one).
    pub binary: PathBuf,
    /// How the service reads the GPUs (`nvml`, `sim:N`).
    pub gpus: String,
    /// The server's name as people see it; absent: the host name at run time.
    pub name: Option<String>,
    /// Reload systemd and enable and (re)start the unit afterwards.
    pub start: bool,
    /// Lay the files out as a distribution package does (`--package`): the binary in
    /// `/usr/bin`, the unit in `/usr/lib/systemd/system` ([`PACKAGE_BIN`],
    /// [`PACKAGE_UNIT_FILE`]), so an admin's own units in /etc still override it.
    pub package: bool,
}

impl InstallOptions {
    /// Where the binary goes.
    pub fn bin(&self) -> &'static str {
        if self.package {
            PACKAGE_BIN
        } else {
            BIN
        }
    }

    /// Where the unit goes.
    pub fn unit_file(&self) -> &'static str {
        if self.package {
            PACKAGE_UNIT_FILE
        } else {
            UNIT_FILE
        }
    }
}

/// Where the pieces go (absolute paths on the target system, before `root` is prefixed).
pub const BIN: &str = "/usr/local/bin/gpubook-agent";
/// The unit file.
pub const UNIT_FILE: &str = "/etc/systemd/system/gpubook-agent.service";
/// The binary, in a distribution package (the gpubook-agent .deb and .rpm).
pub const PACKAGE_BIN: &str = "/usr/bin/gpubook-agent";
/// The unit file, in a distribution package.
pub const PACKAGE_UNIT_FILE: &str = "/usr/lib/systemd/system/gpubook-agent.service";
/// The lab's policy.
pub const POLICY: &str = "/etc/gpubook/policy.toml";
/// The bookings database and the jobs' logs.
pub const STATE_DIR: &str = "/var/lib/gpubook";

/// Why an install stopped. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Not root, writing to the real system.
    #[error("installing the system agent needs root: run `sudo gpubook-agent install --system`")]
    NotRoot,
    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The policy file (or its directory) already there can be changed by someone other than
    /// root: they could make themselves an admin.
    #[error("{what} {path} is owned by {owner} with mode {mode:04o}, so someone other than root can change who may book and who is an admin. Fix it with `{fix}`, then run the install again; nothing was changed")]
    UnsafePolicy {
        /// "the policy file" or "the policy's directory".
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Its owner: "uid N (name)".
        owner: String,
        /// Its permission bits.
        mode: u32,
        /// The commands that fix it.
        fix: String,
    },
    /// The server name cannot be used.
    #[error("the server name {0} is not allowed: use 1 to {MAX_NAME} of the characters A-Z a-z 0-9 . _ - (not starting with -)")]
    BadName(String),
    /// The policy file already there does not parse: the service would refuse to start.
    #[error("the policy file {path} is not valid: {message}. Fix it (see the README), then run the install again; nothing was changed")]
    BadPolicy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// systemctl failed.
    #[error("`systemctl {args}` failed: {message}. The files are in place; start the agent with `sudo systemctl enable --now {UNIT}` once systemd runs")]
    Systemctl {
        /// Its arguments.
        args: String,
        /// What it said.
        message: String,
    },
}

/// The longest server name (`--name`).
pub const MAX_NAME: usize = 64;

/// Whether `name` may be the server's name: 1 to [`MAX_NAME`] ASCII letters, digits, `.`,
/// `_` and `-`, not starting with `-`. It is shown to people and goes into the unit's
/// `ExecStart`, where a space, a quote or a `%` would change the command line.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What the install did, one line per step, for the admin to read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// The steps, in order.
    pub steps: Vec<String>,
}

/// The systemd unit for these options.
pub fn unit_text(opts: &InstallOptions) -> String {
    let mut exec = format!(
        "{} serve --shared --state-dir {STATE_DIR} --socket {} --policy {POLICY} --gpus {}",
        opts.bin(),
        gpubook_proto::paths::SYSTEM_SOCKET,
        opts.gpus
    );
    if let Some(name) = &opts.name {
        let _ = write!(exec, " --name {name}");
    }
    // On Slurm the agent talks to the controller through munge: both first, where they run here.
    let after = if opts.gpus == "slurm" {
        "network.target munge.service slurmctld.service"
    } else {
        "network.target nvidia-persistenced.service"
    };
    format!(
        "\
# Installed by `gpubook-agent install --system`; running it again rewrites this file.
# The jobs are this service's children and inherit its sandboxing, so it has only what they
# do not inherit (gpubook's crates/agent/src/install.rs lists what is left out, and why).
[Unit]
Description=gpubook agent: the lab's GPU bookings, enforced on this server
Documentation=https://github.com/gpubook/gpubook
After={after}

[Service]
# The agent stays in the foreground: its process is the one systemd watches.
Type=simple
ExecStart={exec}
# Back soon after a crash; the jobs keep running meanwhile and the new agent adopts them.
Restart=on-failure
RestartSec=2
# Up to 1,024 connections plus the jobs' logs: more descriptors than the usual soft limit of
# 1,024. The job spawn gives jobs the system's limits back; the hard limit stays systemd's
# default anyway, so a job never gets less than a login session does.
LimitNOFILE=65536:524288
# The jobs run in this unit's cgroup: a task limit here would cap all of them together.
TasksMax=infinity
# A job killed for memory must not stop the agent, nor take the other jobs with it (the
# default under Delegate=yes; said here so that it stays so).
OOMPolicy=continue
# Under memory pressure the OOM killer picks a job before the agent that stops jobs at
# their slots' ends. Jobs inherit this score: the job spawn resets it to 0 for them.
OOMScoreAdjust=-500
# /run/gpubook: the socket's directory, which every lab user may reach.
RuntimeDirectory=gpubook
RuntimeDirectoryMode=0755
# /var/lib/gpubook: the bookings database and the jobs' logs, root only.
StateDirectory=gpubook
StateDirectoryMode=0700
# Stopping or upgrading the agent leaves the jobs running; the next agent adopts them and
# stops each at its slot's end.
KillMode=process
# A cgroup per job, made by the agent under this unit's, so a job's every process is found
# and stopped.
Delegate=yes

[Install]
WantedBy=multi-user.target
"
    )
}

/// The policy written when there is none: every limit shown, none in force.
pub const EXAMPLE_POLICY: &str = "\
# The lab's GPU booking policy, read by gpubook-agent at start (see the README).
# Every limit below is commented out: as written, anyone may book anything and only root is
# an admin. Uncomment and edit, then `sudo systemctl restart gpubook-agent`.
default_role = \"user\"            # role of anyone not listed
# admins = [\"alice\", \"group:gpu-admins\"]
# guests = [\"group:students\"]      # guests can look but not book
# granularity = \"15m\"              # bookings snap to this grid
# max_booking = \"24h\"              # longest single booking
# max_ahead = \"14d\"                # how far ahead a booking may start
# weekly_quota_gpu_hours = 200     # per user, Monday 00:00 UTC to Monday
# max_gpus_at_once = 4             # per user, at any moment
# over_policy = \"approval\"         # beyond these: wait for an admin, or \"refuse\"
# intruders = \"warn\"               # or \"stop\": SIGTERM to a process on a GPU booked by someone else
# idle_after = \"30m\"               # announce a started booking idle this long
# release_idle = false             # and release it
# idle_held_after = \"30m\"          # announce a started booking whose GPUs hold memory
# idle_held_below = 5              #   below this % utilisation this long (\"off\": never)
# release_idle_held = false        # and release it
";

/// Installs the system agent. Nothing is changed when the server name is not allowed, or the
/// existing policy does not parse or can be changed by someone other than root.
pub fn install_system(opts: &InstallOptions) -> Result<InstallReport, InstallError> {
    let real = opts.root == Path::new("/");
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if real && euid != 0 {
        return Err(InstallError::NotRoot);
    }
    if let Some(name) = &opts.name {
        if !valid_name(name) {
            return Err(InstallError::BadName(quote_name(name)));
        }
    }
    // Root owns the policy on a real install; below `--root` (a package build) whoever builds
    // it may, as they own everything else there.
    let trusted = |uid: u32| uid == 0 || (!real && uid == euid);
    let at = |p: &str| opts.root.join(p.trim_start_matches('/'));
    let mut report = InstallReport::default();

    // The policy first: a broken or unsafe one stops the install before anything changes.
    let policy = at(POLICY);
    let policy_dir = policy.parent().expect("policy has a parent");
    match std::fs::metadata(policy_dir) {
        Ok(meta) => check_owner("the policy's directory", policy_dir, &meta, trusted)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(InstallError::Io {
                action: "read",
                path: policy_dir.to_path_buf(),
                source,
            })
        }
    }
    match read_policy(&policy, trusted) {
        Ok(text) => {
            Policy::from_toml(&text).map_err(|e| InstallError::BadPolicy {
                path: policy.clone(),
                message: e.to_string(),
            })?;
            report
                .steps
                .push(format!("kept the policy {POLICY} (it is valid)"));
        }
        Err(PolicyRead::Missing) => {
            create_dir(policy_dir, 0o755)?;
            write_atomic(&policy, EXAMPLE_POLICY.as_bytes(), 0o644)?;
            report.steps.push(format!(
                "wrote an example policy {POLICY} (no limits yet: edit it)"
            ));
        }
        Err(PolicyRead::Failed(e)) => return Err(e),
    }

    let (bin_path, unit_path) = (opts.bin(), opts.unit_file());
    let bin = at(bin_path);
    let same = match (
        std::fs::canonicalize(&opts.binary),
        std::fs::canonicalize(&bin),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        report
            .steps
            .push(format!("the agent binary is already {bin_path}"));
    } else {
        let bytes = std::fs::read(&opts.binary).map_err(|source| InstallError::Io {
            action: "read",
            path: opts.binary.clone(),
            source,
        })?;
        create_dir(bin.parent().expect("bin has a parent"), 0o755)?;
        write_atomic(&bin, &bytes, 0o755)?;
        report
            .steps
            .push(format!("installed the agent as {bin_path}"));
    }

    create_dir(&at(STATE_DIR), 0o700)?;
    report
        .steps
        .push(format!("state directory {STATE_DIR} (root only)"));

    let unit = at(unit_path);
    create_dir(unit.parent().expect("unit has a parent"), 0o755)?;
    write_atomic(&unit, unit_text(opts).as_bytes(), 0o644)?;
    report.steps.push(format!("wrote the unit {unit_path}"));

    if opts.start && real {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", UNIT])?;
        // restart, not start: an upgrade must run the new binary. Jobs survive it.
        systemctl(&["restart", UNIT])?;
        report.steps.push(format!(
            "enabled and (re)started {UNIT}; its socket is {}",
            gpubook_proto::paths::SYSTEM_SOCKET
        ));
    } else {
        report.steps.push(format!(
            "not started: run `sudo systemctl daemon-reload && sudo systemctl enable --now {UNIT}`"
        ));
    }
    Ok(report)
}

/// Why the existing policy was not read.
enum PolicyRead {
    /// There is none.
    Missing,
    /// It is unsafe, or cannot be read.
    Failed(InstallError),
}

/// The policy's text, once its owner and mode are checked on the very file read (no window
/// for it to be swapped between the check and the read).
fn read_policy(path: &Path, trusted: impl Fn(u32) -> bool) -> Result<String, PolicyRead> {
    let io = |action, source| {
        PolicyRead::Failed(InstallError::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(PolicyRead::Missing),
        Err(e) => return Err(io("read", e)),
    };
    let meta = file.metadata().map_err(|e| io("read", e))?;
    check_owner("the policy file", path, &meta, trusted).map_err(PolicyRead::Failed)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).map_err(|e| io("read", e))?;
    Ok(text)
}

/// Refuses `path` when its owner is not `trusted` or its group or others may write it.
fn check_owner(
    what: &'static str,
    path: &Path,
    meta: &std::fs::Metadata,
    trusted: impl Fn(u32) -> bool,
) -> Result<(), InstallError> {
    use std::os::unix::fs::MetadataExt;
    let (uid, mode) = (meta.uid(), meta.mode() & 0o7777);
    let owned = trusted(uid);
    let writable = mode & 0o022 != 0;
    if owned && !writable {
        return Ok(());
    }
    let shown = path.display();
    let mut fix = Vec::new();
    if !owned {
        fix.push(format!("sudo chown root:root {shown}"));
    }
    if writable {
        fix.push(format!("sudo chmod go-w {shown}"));
    }
    let owner = match crate::identity::user_name(uid) {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    };
    Err(InstallError::UnsafePolicy {
        what,
        path: path.to_path_buf(),
        owner,
        mode,
        fix: fix.join(" && "),
    })
}

/// A refused name as the error shows it: quoted, and cut short when long.
fn quote_name(name: &str) -> String {
    let mut shown: String = name.chars().take(MAX_NAME).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

fn systemctl(args: &[&str]) -> Result<(), InstallError> {
    let out = Command::new("systemctl").args(args).output();
    let message = match out {
        Ok(o) if o.status.success() => return Ok(()),
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    Err(InstallError::Systemctl {
        args: args.join(" "),
        message,
    })
}

fn create_dir(dir: &Path, mode: u32) -> Result<(), InstallError> {
    let io = |action, source| InstallError::Io {
        action,
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io("create", e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("set the mode of", e))
}

/// Writes `path` through a temporary file in the same directory and a rename, so a reader
/// (or a running service) never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let io = |action, p: &Path, source| InstallError::Io {
        action,
        path: p.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
    f.write_all(bytes).map_err(|e| io("write", &tmp, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("set the mode of", &tmp, e))?;
    f.sync_all().map_err(|e| io("sync", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("replace", path, e)
    })
}
