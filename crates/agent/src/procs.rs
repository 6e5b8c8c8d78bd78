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

/// Whether `pid` still runs as the process that started at `ticks` (not a zombie).
pub fn is_alive(pid: u32, ticks: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 2..].chars().next())
        .unwrap_or('X');
    state != 'Z' && state != 'X' && parse_start_ticks(&stat) == Some(ticks)
}

/// Every live process whose environment holds `key=value`.
pub fn with_env(key: &str, value: &str) -> Vec<u32> {
    let needle = format!("{key}={value}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if environ_has(&entry.path(), &needle) {
            out.push(pid);
        }
    }
    out
}

fn environ_has(proc_dir: &Path, needle: &str) -> bool {
    std::fs::read(proc_dir.join("environ"))
        .map(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        .unwrap_or(false)
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
        let mut found = with_env("GPUBOOK_TEST_MARK", "procs-test-7");
        while found.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = with_env("GPUBOOK_TEST_MARK", "procs-test-7");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, vec![child.id()]);
        assert!(with_env("GPUBOOK_TEST_MARK", "procs-test-7").is_empty());
    }
}
