//! `gpubook-agent install --system`, run for real into a temporary root (`--root`), as an
//! admin's package build would: the files an admin gets, an upgrade keeping an edited policy,
//! a broken or unsafe policy or a bad server name stopping the install with nothing changed,
//! the unit's limits and the sandboxing it must not have (jobs would inherit it), and the
//! unit checked by systemd's own `systemd-analyze verify` where it is installed.
//!
//! One test chowns a file to another user, which needs root: CI runs as root and sets
//! GPUBOOK_REQUIRE_ROOT_TESTS=1, so there it fails instead of skipping.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn install(root: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
        .args(["install", "--system", "--no-start", "--root"])
        .arg(root)
        .args(extra)
        .output()
        .expect("run gpubook-agent install")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A valid policy at `root`'s policy path, its directory 0755 and the file `file_mode`
/// (whatever the umask).
fn put_policy(root: &Path, text: &str, file_mode: u32) -> std::path::PathBuf {
    let policy = root.join("etc/gpubook/policy.toml");
    let dir = policy.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    set_mode(dir, 0o755);
    std::fs::write(&policy, text).unwrap();
    set_mode(&policy, file_mode);
    policy
}

/// Nothing but the policy's directory exists below `root`: the install wrote nothing.
fn assert_nothing_written(root: &Path) {
    for p in ["usr", "var", "etc/systemd"] {
        assert!(!root.join(p).exists(), "{p} was written");
    }
    let left: Vec<_> = std::fs::read_dir(root.join("etc/gpubook"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["policy.toml"], "only the policy is there");
}

fn unit_of(root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/systemd/system/gpubook-agent.service")).unwrap()
}

#[test]
fn install_writes_binary_unit_state_and_example_policy() {
    let root = tempfile::tempdir().unwrap();
    let out = install(root.path(), &["--name", "lab1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("systemctl enable --now gpubook-agent.service"),
        "{said}"
    );

    let bin = root.path().join("usr/local/bin/gpubook-agent");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_gpubook-agent")).unwrap(),
        "the installed binary is the one that ran"
    );
    let version = Command::new(&bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("gpubook-agent "));

    let state = root.path().join("var/lib/gpubook");
    assert_eq!(mode(&state), 0o700, "bookings and logs are root's only");

    let unit =
        std::fs::read_to_string(root.path().join("etc/systemd/system/gpubook-agent.service"))
            .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    assert_eq!(
        exec,
        "/usr/local/bin/gpubook-agent serve --shared --state-dir /var/lib/gpubook \
         --socket /run/gpubook/agent.sock --policy /etc/gpubook/policy.toml --gpus nvml --name lab1"
    );
    for line in [
        "RuntimeDirectoryMode=0755",
        "KillMode=process",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
    }

    // The example policy parses as the agent will parse it, and sets no limits.
    let policy = std::fs::read_to_string(root.path().join("etc/gpubook/policy.toml")).unwrap();
    let parsed = gpubook_core::Policy::from_toml(&policy).expect("the example policy parses");
    assert_eq!(
        parsed,
        gpubook_core::Policy::from_toml("default_role = \"user\"").unwrap()
    );

    // The unit, and the ExecStart's flags, are what this agent accepts: run the same serve
    // line's flags through --help parsing by starting it with a bad --gpus would be
    // circular, so instead check every flag appears in `serve --help`.
    let help = Command::new(&bin)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in exec.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag), "serve does not know {flag}");
    }
}

#[test]
fn a_package_layout_puts_the_binary_in_usr_bin_and_the_unit_in_usr_lib() {
    let root = tempfile::tempdir().unwrap();
    let out = install(root.path(), &["--package"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = root.path().join("usr/bin/gpubook-agent");
    assert_eq!(mode(&bin), 0o755);
    let unit = std::fs::read_to_string(
        root.path()
            .join("usr/lib/systemd/system/gpubook-agent.service"),
    )
    .unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/gpubook-agent serve --shared"),
        "{unit}"
    );
    assert!(root.path().join("etc/gpubook/policy.toml").is_file());
    // Nothing in the places of a hand install.
    assert!(!root.path().join("usr/local").exists());
    assert!(!root.path().join("etc/systemd").exists());
}

#[test]
fn a_second_install_upgrades_and_keeps_the_admins_policy() {
    let root = tempfile::tempdir().unwrap();
    assert!(install(root.path(), &[]).status.success());
    let policy = root.path().join("etc/gpubook/policy.toml");
    let edited = "default_role = \"user\"\nadmins = [\"alice\"]\nmax_gpus_at_once = 2\n";
    std::fs::write(&policy, edited).unwrap();
    let bin = root.path().join("usr/local/bin/gpubook-agent");
    std::fs::write(&bin, b"an older agent").unwrap();

    let out = install(root.path(), &["--gpus", "sim:2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&policy).unwrap(),
        edited,
        "policy kept"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept the policy"));
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_gpubook-agent")).unwrap(),
        "binary upgraded"
    );
    let unit =
        std::fs::read_to_string(root.path().join("etc/systemd/system/gpubook-agent.service"))
            .unwrap();
    assert!(unit.contains("--gpus sim:2"));
    // No temporary files left behind.
    for dir in ["usr/local/bin", "etc/gpubook", "etc/systemd/system"] {
        for e in std::fs::read_dir(root.path().join(dir)).unwrap() {
            let name = e.unwrap().file_name();
            assert!(
                !name.to_string_lossy().contains(".tmp-"),
                "{name:?} left in {dir}"
            );
        }
    }
}

#[test]
fn a_broken_policy_stops_the_install_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let policy = put_policy(root.path(), "max_booking = \"forever\"\n", 0o644);
    let out = install(root.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policy.toml is not valid"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(!root.path().join("usr/local/bin/gpubook-agent").exists());
    assert!(!root.path().join("etc/systemd/system").exists());
    assert_eq!(
        std::fs::read_to_string(&policy).unwrap(),
        "max_booking = \"forever\"\n"
    );
}

#[test]
fn bad_gpu_source_and_missing_system_flag_are_usage_errors() {
    let root = tempfile::tempdir().unwrap();
    let out = install(root.path(), &["--gpus", "cuda"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cuda"));
    assert!(!root.path().join("usr").exists(), "nothing written");

    let out = Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
        .args(["install", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap usage error without --system"
    );
}

/// systemd's own checker reads the unit (where systemd-analyze is installed; CI has it).
#[test]
fn systemd_accepts_the_unit() {
    if !gpubook_testkit::require_tools(
        "systemd_accepts_the_unit",
        &["systemd-analyze"],
        "install systemd (scripts/setup-debian.sh)",
    ) {
        return;
    }
    let probe = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect("run systemd-analyze");
    assert!(probe.status.success());
    let root = tempfile::tempdir().unwrap();
    assert!(install(root.path(), &[]).status.success());
    // verify needs ExecStart's binary to exist at its real path: point the copy's
    // ExecStart at the installed binary under the temporary root.
    let unit = root.path().join("etc/systemd/system/gpubook-agent.service");
    let text = std::fs::read_to_string(&unit).unwrap().replace(
        "ExecStart=/usr/local/bin/gpubook-agent",
        &format!(
            "ExecStart={}",
            root.path().join("usr/local/bin/gpubook-agent").display()
        ),
    );
    let check = root.path().join("gpubook-agent.service");
    std::fs::write(&check, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&check)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("gpubook-agent.service"))
        .collect();
    assert!(problems.is_empty(), "systemd-analyze verify: {err}");
}

#[test]
fn a_policy_that_group_or_others_can_write_is_refused_and_nothing_is_written() {
    for file_mode in [0o666, 0o664, 0o646, 0o620] {
        let root = tempfile::tempdir().unwrap();
        let text = "default_role = \"user\"\n";
        let policy = put_policy(root.path(), text, file_mode);
        let out = install(root.path(), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "mode {file_mode:o}: {err}");
        for said in [
            format!("the policy file {}", policy.display()),
            format!("with mode {file_mode:04o}"),
            "is owned by uid ".to_string(),
            format!("chmod go-w {}", policy.display()),
            "nothing was changed".to_string(),
        ] {
            assert!(
                err.contains(&said),
                "mode {file_mode:o}: {said:?} missing: {err}"
            );
        }
        assert!(!err.contains("chown"), "the owner is fine: {err}");
        assert_nothing_written(root.path());
        assert_eq!(std::fs::read_to_string(&policy).unwrap(), text);
        assert_eq!(
            mode(&policy),
            file_mode,
            "the policy's mode is left to the admin"
        );
    }
}

#[test]
fn a_policy_directory_others_can_write_is_refused_and_nothing_is_written() {
    let root = tempfile::tempdir().unwrap();
    let policy = put_policy(root.path(), "default_role = \"user\"\n", 0o644);
    let dir = policy.parent().unwrap();
    set_mode(dir, 0o777);
    let out = install(root.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("the policy's directory {} ", dir.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("chmod go-w {}`", dir.display())),
        "{err}"
    );
    assert_nothing_written(root.path());
    assert_eq!(mode(dir), 0o777);
}

#[test]
fn a_policy_owned_by_another_user_is_refused_and_nothing_is_written() {
    if !gpubook_testkit::require_root(
        "a_policy_owned_by_another_user_is_refused_and_nothing_is_written",
    ) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let text = "default_role = \"user\"\nadmins = [\"mallory\"]\n";
    let policy = put_policy(root.path(), text, 0o644);
    // nobody: no entry needed, any uid but root's will do.
    std::os::unix::fs::chown(&policy, Some(65534), Some(65534)).unwrap();
    let out = install(root.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for said in [
        format!("the policy file {}", policy.display()),
        "is owned by uid 65534".to_string(),
        "with mode 0644".to_string(),
        format!("chown root:root {}`", policy.display()),
        "nothing was changed".to_string(),
    ] {
        assert!(err.contains(&said), "{said:?} missing: {err}");
    }
    assert!(!err.contains("chmod"), "the mode is fine: {err}");
    assert_nothing_written(root.path());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&policy).unwrap().uid(), 65534);

    // Given back to root, the same policy is kept.
    std::os::unix::fs::chown(&policy, Some(0), Some(0)).unwrap();
    let out = install(root.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), text);
}

#[test]
fn a_server_name_outside_the_rule_is_refused_and_nothing_is_written() {
    let long = "a".repeat(65);
    for bad in [
        "",
        "-lab1",
        "--gpus",
        "lab 1",
        "lab1\"",
        "lab1;reboot",
        "lab%n",
        "lab\\1",
        "labé",
        "lab/1",
        long.as_str(),
    ] {
        let root = tempfile::tempdir().unwrap();
        // `--name=…`: a value starting with '-' reaches the install, not clap's own check.
        let out = install(root.path(), &[&format!("--name={bad}")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {err}");
        assert!(
            err.contains("is not allowed")
                && err.contains("1 to 64")
                && err.contains("A-Z a-z 0-9 . _ -"),
            "{bad:?}: the refusal should state the rule: {err}"
        );
        assert!(
            err.len() < 400,
            "a long name is not echoed at length: {err}"
        );
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            0,
            "{bad:?}: nothing written"
        );
    }

    let longest = "L".repeat(64);
    for good in ["lab1", "gpu-box_2.cs", "A", "0", longest.as_str()] {
        let root = tempfile::tempdir().unwrap();
        let out = install(root.path(), &["--name", good]);
        assert!(
            out.status.success(),
            "{good:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let unit = unit_of(root.path());
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap();
        assert!(exec.ends_with(&format!(" --name {good}")), "{exec}");
    }
}

#[test]
fn the_unit_raises_the_descriptor_limit_and_has_no_sandboxing_jobs_would_inherit() {
    let root = tempfile::tempdir().unwrap();
    let out = install(root.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = unit_of(root.path());
    let lines: Vec<&str> = unit.lines().collect();
    let value = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in:\n{unit}"))
    };

    // 1,024 connections plus the jobs' logs; and the hard limit, which jobs inherit, is not
    // below systemd's default.
    let nofile = value("LimitNOFILE");
    let (soft, hard) = nofile.split_once(':').unwrap_or((nofile, nofile));
    assert!(soft.parse::<u64>().unwrap() >= 65536, "{nofile}");
    assert!(hard.parse::<u64>().unwrap() >= 524288, "{nofile}");
    assert_eq!(
        value("TasksMax"),
        "infinity",
        "jobs share the unit's task limit"
    );
    assert_eq!(
        value("OOMPolicy"),
        "continue",
        "a job's OOM kill stops nothing else"
    );
    assert_eq!(
        value("KillMode"),
        "process",
        "jobs outlive an agent restart"
    );
    assert_eq!(value("Delegate"), "yes", "the agent makes a cgroup per job");
    assert_eq!(value("Restart"), "on-failure");
    // Jobs inherit it, and the job spawn resets it to 0; never -1000 (never killed at all).
    let oom: i32 = value("OOMScoreAdjust").parse().unwrap();
    assert!((-999..0).contains(&oom), "OOMScoreAdjust={oom}");

    // Jobs are the unit's children: none of this may be there.
    for key in [
        "PrivateTmp",
        "ProtectHome",
        "ProtectSystem",
        "PrivateDevices",
        "ProtectKernelModules",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "ProtectProc",
        "PrivateNetwork",
        "PrivateUsers",
        "ReadOnlyPaths",
        "InaccessiblePaths",
        "NoNewPrivileges",
        "CapabilityBoundingSet",
        "SystemCallFilter",
        "MemoryDenyWriteExecute",
        "RestrictSUIDSGID",
        "RestrictNamespaces",
        "DevicePolicy",
        "UMask",
        "MemoryMax",
        "User",
        "DynamicUser",
    ] {
        assert!(
            !lines.iter().any(|l| l.starts_with(&format!("{key}="))),
            "{key} is inherited by the jobs:\n{unit}"
        );
    }

    // Each directive says why it is there.
    for key in [
        "Type",
        "Restart",
        "LimitNOFILE",
        "TasksMax",
        "OOMPolicy",
        "OOMScoreAdjust",
        "KillMode",
        "Delegate",
    ] {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("{key}=")))
            .unwrap();
        assert!(
            lines[at - 1].starts_with("# "),
            "{key} has no comment:\n{unit}"
        );
    }
}

#[test]
fn a_slurm_install_runs_the_agent_on_slurm_after_munge_and_the_controller() {
    let root = tempfile::tempdir().unwrap();
    let out = install(root.path(), &["--gpus", "slurm", "--name", "cluster"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = unit_of(root.path());
    assert!(unit.contains("--gpus slurm --name cluster"), "{unit}");
    assert!(
        unit.contains("After=network.target munge.service slurmctld.service"),
        "{unit}"
    );
    assert!(!unit.contains("nvidia-persistenced"), "{unit}");
}
