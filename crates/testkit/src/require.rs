//! The one rule for a test that needs root or a service: fail when the part is required
//! (CI), else print why the test is skipped. See the crate's documentation.

use std::path::Path;
use std::process::{Command, Stdio};

/// What a test needs that a machine may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Root: Unix users, jobs run as them, sshd. Required under `GPUBOOK_REQUIRE_ROOT_TESTS`.
    Root,
    /// A service set up by `scripts/calendar-services.sh` or `scripts/ssh-services.sh`.
    /// Required under `GPUBOOK_REQUIRE_SERVICES`.
    Service,
    /// A host that delegates cgroup v2 to the agent (a pure v2 hierarchy, its own cgroup
    /// writable). A property of the host, not of root: required only under
    /// `GPUBOOK_REQUIRE_CGROUP_V2`, set where the host is known to delegate.
    CgroupV2,
}

impl Need {
    /// The variable that makes this part required.
    pub fn variable(self) -> &'static str {
        match self {
            Need::Root => "GPUBOOK_REQUIRE_ROOT_TESTS",
            Need::Service => "GPUBOOK_REQUIRE_SERVICES",
            Need::CgroupV2 => "GPUBOOK_REQUIRE_CGROUP_V2",
        }
    }
}

/// Whether `var` is set to something other than empty or `0`.
fn set(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether a missing `need` fails the test rather than skipping it.
pub fn required(need: Need) -> bool {
    set(need.variable())
}

/// Reports that `test` cannot run because `missing`; `fix` says what to run. Panics when
/// `need` is required, else prints the skip. Always returns false (the test does not run).
pub fn missing(test: &str, need: Need, missing: &str, fix: &str) -> bool {
    let var = need.variable();
    assert!(
        !required(need),
        "{test} cannot run: {missing}. {var} is set, so this is a failure, not a skip; {fix}"
    );
    eprintln!("SKIPPED {test}: {missing}; {fix} (with {var}=1 this is a failure)");
    false
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// Whether `test`, which needs root, may run: true as root; otherwise the rule decides.
pub fn require_root(test: &str) -> bool {
    is_root()
        || missing(
            test,
            Need::Root,
            "it needs root (it creates Unix users, runs processes as them or starts sshd)",
            "run it as root, e.g. `sudo -E scripts/test.sh`",
        )
}

/// Whether the program `tool` is on PATH (or is a path that exists).
pub fn have_tool(tool: &str) -> bool {
    if tool.contains('/') {
        return Path::new(tool).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Whether every one of `tools` is there; otherwise the rule decides, giving `fix` (what to
/// run to get them) as the advice.
pub fn require_tools(test: &str, tools: &[&str], fix: &str) -> bool {
    let absent: Vec<&str> = tools.iter().copied().filter(|t| !have_tool(t)).collect();
    absent.is_empty()
        || missing(
            test,
            Need::Service,
            &format!("{} missing", absent.join(", ")),
            fix,
        )
}

/// Whether this test may use the tests' Slurm cluster (`scripts/slurm-services.sh`): it runs
/// as root, Slurm's commands are there and slurmctld answers; otherwise the rule decides.
pub fn require_slurm(test: &str) -> bool {
    if !require_root(test)
        || !require_tools(
            test,
            &["scontrol", "sbatch", "squeue", "sinfo"],
            "run `. scripts/slurm-services.sh`",
        )
    {
        return false;
    }
    let up = Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("is UP"));
    up || missing(
        test,
        Need::Service,
        "slurmctld does not answer `scontrol ping`",
        "run `. scripts/slurm-services.sh`",
    )
}

/// Whether `$GPUBOOK_PYTHON` (else python3) imports `modules` (comma-separated); otherwise
/// the rule decides.
pub fn require_python(test: &str, modules: &str) -> bool {
    let python = crate::radicale::python();
    let ok = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok || missing(
        test,
        Need::Service,
        &format!("{python} cannot import {modules}"),
        "run `. ./scripts/calendar-services.sh` first",
    )
}

/// Why the host does not delegate cgroup v2 to a process of this one (the agent's own rule:
/// `/sys/fs/cgroup` is a v2 hierarchy and a child of this process's cgroup can be made), or
/// `None` when it does.
pub fn cgroup_v2_not_delegated() -> Option<String> {
    let root = Path::new("/sys/fs/cgroup");
    if !root.join("cgroup.controllers").exists() {
        return Some(
            "/sys/fs/cgroup is not a cgroup v2 hierarchy (cgroup v1 or hybrid)".to_string(),
        );
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return Some("/proc/self/cgroup names no cgroup v2 path".to_string());
    };
    let probe = root
        .join(path.trim().trim_start_matches('/'))
        .join(format!("gpubook-probe-{}", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&probe);
            None
        }
        Err(e) => Some(format!("cannot make {}: {e}", probe.display())),
    }
}

/// Whether `test` may rely on the host delegating cgroup v2; otherwise the rule decides
/// (a failure only under `GPUBOOK_REQUIRE_CGROUP_V2`).
pub fn require_cgroup_v2(test: &str) -> bool {
    match cgroup_v2_not_delegated() {
        None => true,
        Some(why) => missing(
            test,
            Need::CgroupV2,
            &format!("the host does not delegate cgroup v2 ({why}), so the cgroup kill path is NOT tested here"),
            "run it on a pure cgroup v2 host, as root in a delegated cgroup (a systemd unit or \
             container with Delegate=yes)",
        ),
    }
}
