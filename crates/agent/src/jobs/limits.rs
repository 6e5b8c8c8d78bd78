//! What a job gets from the system rather than from the agent: the default resource limits a
//! login gets; and its log, held to the policy's `max_log`, its tail read cheaply.

/// The line put at the cut of a log that reached the policy's `max_log`.
pub(super) const LOG_CUT: &str =
    "\n[gpubook-agent: this log reached the lab's size limit (max_log); later output is dropped]\n";

/// The system's default resource limits: those of pid 1, which every login inherits, except
/// open files: systemd raises its own to the kernel's maximum but gives every service and login
/// 1024 (soft; `select()` breaks above it) and 524288 (hard). Read once; empty where
/// /proc/1/limits cannot be read (then jobs keep the agent's).
pub(super) fn system_limits() -> Vec<(libc::__rlimit_resource_t, libc::rlimit)> {
    std::fs::read_to_string("/proc/1/limits")
        .map(|t| parse_limits(&t))
        .unwrap_or_default()
        .into_iter()
        .map(|(resource, limit)| match resource {
            libc::RLIMIT_NOFILE => (resource, login_files(limit)),
            _ => (resource, limit),
        })
        .collect()
}

/// What a login gets for open files, given pid 1's limit.
pub(super) fn login_files(pid1: libc::rlimit) -> libc::rlimit {
    libc::rlimit {
        rlim_cur: pid1.rlim_cur.min(1024),
        rlim_max: pid1.rlim_max.min(524_288),
    }
}

/// The limits in a /proc/PID/limits text.
pub(super) fn parse_limits(text: &str) -> Vec<(libc::__rlimit_resource_t, libc::rlimit)> {
    const NAMES: &[(&str, libc::__rlimit_resource_t)] = &[
        ("Max cpu time", libc::RLIMIT_CPU),
        ("Max file size", libc::RLIMIT_FSIZE),
        ("Max data size", libc::RLIMIT_DATA),
        ("Max stack size", libc::RLIMIT_STACK),
        ("Max core file size", libc::RLIMIT_CORE),
        ("Max resident set", libc::RLIMIT_RSS),
        ("Max processes", libc::RLIMIT_NPROC),
        ("Max open files", libc::RLIMIT_NOFILE),
        ("Max locked memory", libc::RLIMIT_MEMLOCK),
        ("Max address space", libc::RLIMIT_AS),
        ("Max file locks", libc::RLIMIT_LOCKS),
        ("Max pending signals", libc::RLIMIT_SIGPENDING),
        ("Max msgqueue size", libc::RLIMIT_MSGQUEUE),
        ("Max nice priority", libc::RLIMIT_NICE),
        ("Max realtime priority", libc::RLIMIT_RTPRIO),
        ("Max realtime timeout", libc::RLIMIT_RTTIME),
    ];
    let value = |v: &str| {
        if v == "unlimited" {
            Some(libc::RLIM_INFINITY)
        } else {
            v.parse().ok()
        }
    };
    text.lines()
        .filter_map(|line| {
            let (name, resource) = NAMES.iter().find(|(n, _)| line.starts_with(n))?;
            let mut rest = line[name.len()..].split_whitespace();
            let (soft, hard) = (value(rest.next()?)?, value(rest.next()?)?);
            Some((
                *resource,
                libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                },
            ))
        })
        .collect()
}

/// Cuts the log at `path` back to `max` bytes and a line saying so, once it is longer. The job
/// appends to it: what it writes after the cut is dropped at the next look, so the file holds
/// at most `max`, the line, and what the job wrote in one patrol's time.
pub(super) fn cut_log(path: &std::path::Path, max: u64) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.len() <= max + LOG_CUT.len() as u64 {
        return;
    }
    let Ok(file) = std::fs::OpenOptions::new().append(true).open(path) else {
        return;
    };
    use std::io::Write;
    if file.set_len(max).is_ok() {
        let _ = (&file).write_all(LOG_CUT.as_bytes());
    }
}

/// The last non-empty line of a file (the shell's complaint, for a command that did not run),
/// read from its last 4 KiB with a seek, whatever the file's size.
pub(super) fn last_line(path: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut text = Vec::with_capacity(4096);
    file.take(4096).read_to_end(&mut text).ok()?;
    String::from_utf8_lossy(&text)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}
