//! How a job is ended: its end signal and grace, then SIGKILL to everything of it (its
//! process group, every process of its owner carrying its key, its cgroup), confirmed gone
//! before it is recorded; and the per-job cgroup where the host delegates one.

use super::{Marks, Watched, DEFAULT_GRACE_SECS, STOP_RETRY};
use crate::procs;
use gpubook_core::{Booking, BookingId};
use std::time::Duration;

/// The booking's end signal (number and name) and grace period: its own, else the default,
/// never more than the policy's `max_grace` (a booking asking for more is refused when made;
/// this holds older ones, and the default, to a policy that allows less).
pub(crate) fn end_signal(b: &Booking, max_grace_secs: i64) -> (i32, String, Duration) {
    let job = b.job.as_ref();
    let named = job.and_then(|j| j.end_signal.as_deref());
    let (signal, name) = match named.and_then(signal_number) {
        Some(n) => (n, named.unwrap_or_default().to_string()),
        None => (libc::SIGTERM, "SIGTERM".to_string()),
    };
    let grace = job.and_then(|j| j.grace_secs).unwrap_or(DEFAULT_GRACE_SECS);
    let grace = u64::from(grace).min(u64::try_from(max_grace_secs).unwrap_or(0));
    (signal, name, Duration::from_secs(grace))
}

/// Sends `signal` to everything of the job with `key` (its main process while it is still the
/// same live process, everything carrying the key and running as `owner`, its cgroup), waits
/// until `kill_at` for all of it to end, then SIGKILLs what is left. `Some(true)` if SIGKILL was
/// needed; `None` if the end could not be confirmed — /proc could not be read (no file
/// descriptors left), or something still ran 10 s after SIGKILL: then the job is not taken for
/// stopped, and the stop is tried again.
pub(super) async fn terminate(
    marks: &Marks,
    owner: Option<u32>,
    main: Option<&Watched>,
    signal: i32,
    kill_at: tokio::time::Instant,
) -> Option<bool> {
    // The main process counts only while it is the process the job started and not a
    // zombie: a re-adopted job's zombie cannot be reaped here, and its pid may be reused.
    let main_alive = || {
        main.and_then(|w| w.ticks.map(|t| (w.pid, t)))
            .filter(|(pid, ticks)| procs::is_alive(*pid, *ticks))
            .map(|(pid, _)| pid)
    };
    // None: /proc could not be listed.
    let members = || {
        let mut all = marks.pids(owner).ok()?;
        all.extend(cgroup::members(&marks.plain));
        all.extend(main_alive());
        all.sort_unstable();
        all.dedup();
        Some(all)
    };
    signal_all(main_alive(), &members().unwrap_or_default(), signal);
    let mut killed = false;
    loop {
        let left = members();
        let main_done = main.is_none_or(|w| w.done.borrow().is_some() || main_alive().is_none());
        if left.as_ref().is_some_and(|l| l.is_empty()) && main_done {
            return Some(killed);
        }
        if tokio::time::Instant::now() >= kill_at {
            // Again on every look: a member seen only now (the agent could not look before)
            // gets it too.
            cgroup::kill(&marks.plain);
            signal_all(
                main_alive(),
                left.as_deref().unwrap_or_default(),
                libc::SIGKILL,
            );
            killed = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if killed && tokio::time::Instant::now() >= kill_at + Duration::from_secs(10) {
            // Something is left, or the agent cannot tell: not stopped yet.
            return None;
        }
    }
}

/// A cgroup (v2) per job, where the host delegates one to the agent: the agent's own cgroup
/// on a pure v2 hierarchy, writable by it (a systemd unit with `Delegate=yes`). Everything is
/// best effort: where any step fails, the job runs without one and is tracked by its key.
pub(super) mod cgroup {
    use std::path::PathBuf;

    /// The directory for job `key`, if cgroups v2 are delegated here.
    fn dir(key: &str) -> Option<PathBuf> {
        let root = std::path::Path::new("/sys/fs/cgroup");
        if !root.join("cgroup.controllers").exists() {
            return None;
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
        Some(
            root.join(path.trim_start_matches('/'))
                .join(format!("gpubook-job-{key}")),
        )
    }

    /// Creates job `key`'s cgroup.
    pub fn create(key: &str) -> Option<PathBuf> {
        let d = dir(key)?;
        match std::fs::create_dir(&d) {
            Ok(()) => Some(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Some(d),
            Err(_) => None,
        }
    }

    /// The processes in job `key`'s cgroup.
    pub fn members(key: &str) -> Vec<u32> {
        dir(key)
            .and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills everything in job `key`'s cgroup at once (Linux 5.14+).
    pub fn kill(key: &str) {
        if let Some(d) = dir(key) {
            let _ = std::fs::write(d.join("cgroup.kill"), "1");
        }
    }

    /// Removes job `key`'s cgroup once it is empty.
    pub fn remove(key: &str) {
        if let Some(d) = dir(key) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Sends `signal` to the job's process group and to every process that carries its key.
fn signal_all(pid: Option<u32>, members: &[u32], signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; a vanished pid gives ESRCH.
    unsafe {
        if let Some(p) = pid {
            libc::kill(-(p as i32), signal);
        }
        for p in members {
            libc::kill(*p as i32, signal);
        }
    }
}

/// The number of a signal a booking names ("SIGTERM", "term", "USR1"), if jobs may get it.
pub fn signal_number(name: &str) -> Option<i32> {
    Some(match gpubook_core::booking::canonical_signal(name)? {
        "SIGTERM" => libc::SIGTERM,
        "SIGINT" => libc::SIGINT,
        "SIGHUP" => libc::SIGHUP,
        "SIGQUIT" => libc::SIGQUIT,
        "SIGUSR1" => libc::SIGUSR1,
        "SIGUSR2" => libc::SIGUSR2,
        "SIGKILL" => libc::SIGKILL,
        _ => return None,
    })
}

/// Says in the log that `what` (with `{id}` for the booking) could not be confirmed, the first
/// time and then every twelfth try (a minute apart at most): a process stuck in the kernel
/// must not fill the log.
pub(super) fn unconfirmed(id: BookingId, what: &str, tries: &mut u32) {
    if *tries % 12 == 0 {
        eprintln!(
            "gpubook-agent: cannot confirm {}; trying again every {} s",
            what.replace("{id}", &id.to_string()),
            STOP_RETRY.as_secs()
        );
    }
    *tries += 1;
}
