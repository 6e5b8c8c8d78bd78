//! Starting a job: as its owner (groups, gid, uid, and only then its working directory), in
//! its own session and cgroup, with the system's limits, a clean environment the booking
//! cannot override, and its output in a log only its owner may read.

use super::ending::cgroup;
use super::{reserved_var, Jobs, Marks, JOB_KEY_VAR};
use crate::identity::{self, Account};
use gpubook_core::{Booking, BookingId};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

/// The errno the job's pre-exec step reports when it cannot enter the working directory as the
/// owner: one no other step of the spawn returns, so the two are told apart.
const CWD_ERRNO: i32 = libc::EBADE;

impl Jobs {
    /// Starts the job's process; the error says why it could not, in words.
    pub(super) fn spawn(
        &self,
        b: &Booking,
        marks: &Marks,
    ) -> Result<(tokio::process::Child, u32), String> {
        let key = marks.key.as_str();
        let job = b.job.as_ref().ok_or("the booking has no job")?;
        let account = identity::account(&b.owner)
            .ok_or_else(|| format!("there is no user {} on this server", b.owner))?;
        if !self.system && account.uid != self.own_uid {
            return Err(format!(
                "this agent runs in personal mode as uid {}: it cannot run jobs for {}",
                self.own_uid, b.owner
            ));
        }
        let cwd = job.cwd.clone().unwrap_or_else(|| account.home.clone());
        // Never resolved against the agent's own directory: the client sends absolute paths.
        if !cwd.starts_with('/') {
            return Err(format!(
                "the working directory {cwd:?} is not an absolute path; give the full path on \
                 the server"
            ));
        }
        let cwd_c = std::ffi::CString::new(cwd.as_bytes())
            .map_err(|_| "the working directory holds a NUL byte".to_string())?;
        let log = self.open_log(b.id, &account)?;
        let shell = login_shell(&account);
        let mut cmd = tokio::process::Command::new(&shell);
        // The booking's own variables first, so the agent's below always win; the plan refuses
        // these names when booking, and an older stored booking has them skipped here.
        cmd.arg("-lc")
            .arg(&job.command)
            .env_clear()
            .envs(job.env.iter().filter(|(k, _)| !reserved_var(k)))
            .env("HOME", &account.home)
            .env("USER", &b.owner)
            .env("LOGNAME", &b.owner)
            .env("SHELL", &shell)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(job_vars(b))
            .env(JOB_KEY_VAR, key)
            .stdin(std::process::Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| format!("cannot use the log: {e}"))?,
            )
            .stderr(log)
            .kill_on_drop(false);
        if !job.stage.is_empty() {
            // Staged before the slot by `transfer`: one directory per stage name.
            let scratch = self.state.lock().plan.policy().scratch.clone();
            cmd.env(
                "GPUBOOK_STAGE",
                crate::transfer::Transfers::stage_dir(&scratch, b),
            );
        }
        if let Ok(lang) = std::env::var("LANG") {
            if !job.env.contains_key("LANG") {
                cmd.env("LANG", lang);
            }
        }
        let switch = self.system && account.uid != self.own_uid;
        // Its own cgroup where the host delegates one: opened here, joined in the child.
        let cgroup_procs: Option<std::fs::File> = cgroup::create(&marks.plain).and_then(|dir| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .ok()
        });
        let cgroup_fd = cgroup_procs.as_ref().map(|f| {
            use std::os::unix::io::AsRawFd;
            f.as_raw_fd()
        });
        let Account {
            uid, gid, groups, ..
        } = account;
        let limits = self.limits.clone();
        // SAFETY: the closure runs in the child between fork and exec and only makes
        // async-signal-safe system calls on values prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the writer into the cgroup. Without one the job still runs: the
                // key in its environment finds its processes.
                if let Some(fd) = cgroup_fd {
                    libc::write(fd, b"0".as_ptr().cast(), 1);
                }
                // What the agent's unit gave the agent is not the job's: the system's default
                // limits, the default file mode mask, no shield from the OOM killer. Best
                // effort: an agent that is not root may not raise a hard limit back.
                for (resource, limit) in &limits {
                    if libc::setrlimit(*resource, limit) != 0 {
                        // Not allowed to raise the hard limit (no CAP_SYS_RESOURCE): as close
                        // as the agent's own hard limit lets it.
                        let mut own = libc::rlimit {
                            rlim_cur: 0,
                            rlim_max: 0,
                        };
                        if libc::getrlimit(*resource, &mut own) == 0 {
                            let capped = libc::rlimit {
                                rlim_cur: limit.rlim_cur.min(own.rlim_max),
                                rlim_max: limit.rlim_max.min(own.rlim_max),
                            };
                            libc::setrlimit(*resource, &capped);
                        }
                    }
                }
                libc::umask(0o022);
                let adj = libc::open(
                    c"/proc/self/oom_score_adj".as_ptr(),
                    libc::O_WRONLY | libc::O_CLOEXEC,
                );
                if adj >= 0 {
                    libc::write(adj, b"0".as_ptr().cast(), 1);
                    libc::close(adj);
                }
                // Groups (the owner's supplementary ones), then gid, then uid: after setuid
                // nothing else may be changed.
                if switch
                    && (libc::setgroups(groups.len() as _, groups.as_ptr()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                // Only now, as the owner: a directory they may not enter is refused, whether
                // or not it exists for root.
                if libc::chdir(cwd_c.as_ptr()) != 0 {
                    return Err(std::io::Error::from_raw_os_error(CWD_ERRNO));
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            if e.raw_os_error() == Some(CWD_ERRNO) {
                format!(
                    "cannot enter the working directory {cwd} as {}: it does not exist or {} \
                     may not enter it",
                    b.owner, b.owner
                )
            } else {
                format!("cannot start {shell} -lc: {e}")
            }
        })?;
        drop(cgroup_procs);
        let pid = child
            .id()
            .ok_or("the job exited before it could be watched")?;
        Ok((child, pid))
    }

    /// Opens (appending) the job's log: owned by the job's owner, readable by nobody else.
    fn open_log(&self, id: BookingId, owner: &Account) -> Result<std::fs::File, String> {
        std::fs::create_dir_all(&self.log_dir)
            .map_err(|e| format!("cannot create {}: {e}", self.log_dir.display()))?;
        // Nobody may list the directory. (The state directory above it is the agent's alone,
        // so logs are read through the agent: `gpubook logs`.)
        let _ = std::fs::set_permissions(&self.log_dir, std::fs::Permissions::from_mode(0o711));
        let path = self.log_path(id);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open the log {}: {e}", path.display()))?;
        if self.system {
            use std::os::unix::io::AsRawFd;
            // SAFETY: fchown on a descriptor we own.
            let rc = unsafe { libc::fchown(file.as_raw_fd(), owner.uid, owner.gid) };
            if rc != 0 {
                return Err(format!(
                    "cannot give the log to its owner: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(file)
    }
}

/// The variables every job of booking `b` has besides its key ([`JOB_KEY_VAR`]): exactly the
/// booked GPUs visible, in the order `nvidia-smi` shows them, the booking's number and its
/// slot's end. `gpubook env` and `gpubook shell` give the owner's shell the same.
pub fn job_vars(b: &Booking) -> Vec<(&'static str, String)> {
    let gpus = b
        .gpus
        .iter()
        .map(|g| g.0.as_str())
        .collect::<Vec<_>>()
        .join(",");
    vec![
        ("CUDA_VISIBLE_DEVICES", gpus.clone()),
        ("CUDA_DEVICE_ORDER", "PCI_BUS_ID".into()),
        ("GPUBOOK_BOOKING_ID", b.id.to_string()),
        ("GPUBOOK_SLOT_END", b.interval.end.to_rfc3339()),
        ("GPUBOOK_GPUS", gpus),
    ]
}

/// The owner's login shell, or /bin/sh where it is not a real shell (nologin, false).
pub(crate) fn login_shell(a: &Account) -> String {
    let s = a.shell.trim();
    if s.is_empty() || s.ends_with("nologin") || s.ends_with("/false") {
        "/bin/sh".into()
    } else {
        s.to_string()
    }
}
