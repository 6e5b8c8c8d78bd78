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
}

impl Need {
    /// The variable that makes this part required.
    pub fn variable(self) -> &'static str {
        match self {
            Need::Root => "GPUBOOK_REQUIRE_ROOT_TESTS",
            Need::Service => "GPUBOOK_REQUIRE_SERVICES",
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

/// Whether every one of `tools` is there; otherwise the rule decides, advising `script`
/// (the `scripts/*-services.sh` that installs them).
pub fn require_tools(test: &str, tools: &[&str], script: &str) -> bool {
    let absent: Vec<&str> = tools.iter().copied().filter(|t| !have_tool(t)).collect();
    absent.is_empty()
        || missing(
            test,
            Need::Service,
            &format!("{} missing", absent.join(", ")),
            &format!("run `. ./{script}` first"),
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
