//! What /proc says about processes: start times (so a reused pid is not mistaken for a job),
//! and which processes carry a job's key in their environment (so a job's descendants are
//! found even after they left its process group with setsid).

use std::path::Path;

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), if it runs.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

/// Field 22 of a /proc/PID/stat line; the command name (field 2) may hold spaces and ')'.
pub fn parse_start_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 2..];
    // After the name: state is field 3, so starttime (22) is the 20th from here.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// User + system CPU time `pid` has used, in clock ticks (fields 14 and 15 of /proc/PID/stat).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// A figure of /proc/PID/status in kB, e.g. `status_kib(pid, "VmRSS:")`.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Whether `pid` still runs as the process that started at `ticks` (not a zombie). A /proc
/// that cannot be read for another reason than the process being gone (no file descriptors
/// left, say) counts as alive: a job is never taken for ended because the agent could not look.
pub fn is_alive(pid: u32, ticks: u64) -> bool {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(e) => return !gone(&e),
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 2..].chars().next())
        .unwrap_or('X');
    state != 'Z' && state != 'X' && parse_start_ticks(&stat) == Some(ticks)
}

/// Whether an error reading /proc/PID means the process is gone (and not that the agent could
/// not look).
fn gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// The real uid `pid` runs as (the first figure of `Uid:` in /proc/PID/status).
pub fn uid_of(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Every live process whose environment holds `key=value` and that runs as `uid` (when given):
/// a process of another user that copied a job's key is never taken for the job. An error
/// when /proc itself cannot be listed (no file descriptors left) is an error, not "none".
pub fn with_env(key: &str, value: &str, uid: Option<u32>) -> std::io::Result<Vec<u32>> {
    let needle = format!("{key}={value}");
    let dir = std::fs::read_dir("/proc")?;
    let mut out = Vec::new();
    for entry in dir {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if environ_has(&entry.path(), &needle)? && uid.is_none_or(|u| uid_of(pid) == Some(u)) {
            out.push(pid);
        }
    }
    Ok(out)
}

/// Whether the process in `proc_dir` carries `needle`; a process that is gone or whose
/// environment this agent may not read (another user's, in personal mode) does not.
fn environ_has(proc_dir: &Path, needle: &str) -> std::io::Result<bool> {
    match std::fs::read(proc_dir.join("environ")) {
        Ok(env) => Ok(env.split(|b| *b == 0).any(|var| var == needle.as_bytes())),
        Err(e)
            if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE) =>
        {
            Err(e)
        }
        Err(_) => Ok(false),
    }
}

/// When `pid` started, on the wall clock, to about a second (the kernel gives the boot time in
/// whole seconds).
pub fn started_at(pid: u32) -> Option<std::time::SystemTime> {
    let ticks = start_ticks(pid)?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()?
        .max(1);
    let since_boot = std::time::Duration::from_millis(ticks.checked_mul(1000)? / hz);
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(btime) + since_boot)
}

/// Sends `signal` to `pid` only while it is still the process that started at `ticks`. Whether
/// it was sent.
pub fn signal_checked(pid: u32, ticks: u64, signal: i32) -> bool {
    signal_if(pid, || is_alive(pid, ticks), signal)
}

/// Sends `signal` to `pid` if `still_meant()` says, just before, that it is the process meant:
/// through a pidfd where the kernel has one (Linux 5.3+), opened before the check, so a pid
/// reused between the check and the signal is never hit; elsewhere `kill` right after the
/// check. Never to pid 0 or 1, the agent itself, or a number `kill` would read as a group.
pub fn signal_if(pid: u32, still_meant: impl FnOnce() -> bool, signal: i32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if raw <= 1 || pid == std::process::id() {
        return false;
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    if fd >= 0 {
        let fd = fd as libc::c_int;
        // The descriptor names this process for good: check it is the one meant, then signal
        // through it.
        let sent = still_meant()
            // SAFETY: a descriptor we own, a valid signal, no siginfo, no flags.
            && unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd,
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            } == 0;
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
        return sent;
    }
    // SAFETY: kill with a positive pid has no memory effects.
    still_meant() && unsafe { libc::kill(raw, signal) } == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_start_ticks_even_with_odd_names() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_ticks(stat), Some(987654));
        let me = std::process::id();
        let ticks = start_ticks(me).unwrap();
        assert!(is_alive(me, ticks));
        assert!(!is_alive(me, ticks + 1));
        assert!(!is_alive(u32::MAX - 1, ticks));
        let started = started_at(me).unwrap();
        let now = std::time::SystemTime::now();
        assert!(started <= now + std::time::Duration::from_secs(1));
        assert!(now.duration_since(started).unwrap() < std::time::Duration::from_secs(3600));
    }

    #[test]
    fn a_signal_reaches_only_the_process_that_was_meant() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let ticks = start_ticks(child.id()).unwrap();
        // Another start time: a reused pid. Nothing is sent.
        assert!(!signal_checked(child.id(), ticks + 1, libc::SIGKILL));
        assert!(child.try_wait().unwrap().is_none());
        assert!(signal_checked(child.id(), ticks, libc::SIGKILL));
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn reads_cpu_time_and_memory_of_a_process() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(status_kib(me, "VmRSS:").is_some_and(|kib| kib > 0));
        assert_eq!(status_kib(me, "NoSuchField:"), None);
        assert_eq!(cpu_ticks(u32::MAX), None);
    }

    #[test]
    fn finds_processes_by_environment() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .env("GPUBOOK_TEST_MARK", "procs-test-7")
            .spawn()
            .unwrap();
        // The environment is the new program's once exec is done; allow it a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let me = uid_of(std::process::id());
        let find = || with_env("GPUBOOK_TEST_MARK", "procs-test-7", me).unwrap();
        let mut found = find();
        while found.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = find();
        }
        // Another uid's processes are not the job's, even with its key.
        let other = me.map(|u| u + 1);
        let as_other = with_env("GPUBOOK_TEST_MARK", "procs-test-7", other).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, vec![child.id()]);
        assert!(as_other.is_empty());
        assert!(find().is_empty());
    }
}
