//! `gpubook-agent install --system`: what an admin runs once (with sudo) to make the agent a
//! system service every lab user reaches.
//!
//! It puts the binary in `/usr/local/bin`, a systemd unit in `/etc/systemd/system`, the state
//! in `/var/lib/gpubook` (root only) and the socket in `/run/gpubook` (everyone may connect;
//! who they are comes from the socket's peer credentials). An existing policy file is kept
//! and checked; a missing one is written as a commented example with no limits. Running it
//! again upgrades the binary in place and restarts the service: the unit's
//! `KillMode=process` leaves running jobs alone, and the new agent adopts them.

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
}

/// Where the pieces go (absolute paths on the target system, before `root` is prefixed).
pub const BIN: &str = "/usr/local/bin/gpubook-agent";
/// The unit file.
pub const UNIT_FILE: &str = "/etc/systemd/system/gpubook-agent.service";
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

/// What the install did, one line per step, for the admin to read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// The steps, in order.
    pub steps: Vec<String>,
}

/// The systemd unit for these options.
pub fn unit_text(opts: &InstallOptions) -> String {
    let mut exec = format!(
        "{BIN} serve --shared --state-dir {STATE_DIR} --socket {} --policy {POLICY} --gpus {}",
        gpubook_proto::paths::SYSTEM_SOCKET,
        opts.gpus
    );
    if let Some(name) = &opts.name {
        let _ = write!(exec, " --name {name}");
    }
    format!(
        "\
# Installed by `gpubook-agent install --system`; running it again rewrites this file.
[Unit]
Description=gpubook agent: the lab's GPU bookings, enforced on this server
Documentation=https://github.com/gpubook/gpubook
After=network.target nvidia-persistenced.service

[Service]
Type=simple
ExecStart={exec}
Restart=on-failure
RestartSec=2
# /run/gpubook: the socket's directory, which every lab user may reach.
RuntimeDirectory=gpubook
RuntimeDirectoryMode=0755
# /var/lib/gpubook: the bookings database and the jobs' logs, root only.
StateDirectory=gpubook
StateDirectoryMode=0700
# Stopping or upgrading the agent leaves the jobs running; the next agent adopts them and
# stops each at its slot's end.
KillMode=process
# A cgroup per job, so a job's every process is found and stopped.
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
";

/// Installs the system agent. Nothing is changed when the existing policy does not parse.
pub fn install_system(opts: &InstallOptions) -> Result<InstallReport, InstallError> {
    let real = opts.root == Path::new("/");
    // SAFETY: geteuid has no preconditions.
    if real && unsafe { libc::geteuid() } != 0 {
        return Err(InstallError::NotRoot);
    }
    let at = |p: &str| opts.root.join(p.trim_start_matches('/'));
    let mut report = InstallReport::default();

    // The policy first: a broken one stops the install before anything changes.
    let policy = at(POLICY);
    match std::fs::read_to_string(&policy) {
        Ok(text) => {
            Policy::from_toml(&text).map_err(|e| InstallError::BadPolicy {
                path: policy.clone(),
                message: e.to_string(),
            })?;
            report
                .steps
                .push(format!("kept the policy {POLICY} (it is valid)"));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_dir(policy.parent().expect("policy has a parent"), 0o755)?;
            write_atomic(&policy, EXAMPLE_POLICY.as_bytes(), 0o644)?;
            report.steps.push(format!(
                "wrote an example policy {POLICY} (no limits yet: edit it)"
            ));
        }
        Err(source) => {
            return Err(InstallError::Io {
                action: "read",
                path: policy,
                source,
            })
        }
    }

    let bin = at(BIN);
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
            .push(format!("the agent binary is already {BIN}"));
    } else {
        let bytes = std::fs::read(&opts.binary).map_err(|source| InstallError::Io {
            action: "read",
            path: opts.binary.clone(),
            source,
        })?;
        create_dir(bin.parent().expect("bin has a parent"), 0o755)?;
        write_atomic(&bin, &bytes, 0o755)?;
        report.steps.push(format!("installed the agent as {BIN}"));
    }

    create_dir(&at(STATE_DIR), 0o700)?;
    report
        .steps
        .push(format!("state directory {STATE_DIR} (root only)"));

    let unit = at(UNIT_FILE);
    create_dir(unit.parent().expect("unit has a parent"), 0o755)?;
    write_atomic(&unit, unit_text(opts).as_bytes(), 0o644)?;
    report.steps.push(format!("wrote the unit {UNIT_FILE}"));

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
