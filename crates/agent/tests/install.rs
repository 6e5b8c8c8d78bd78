//! `gpubook-agent install --system`, run for real into a temporary root (`--root`), as an
//! admin's package build would: the files an admin gets, an upgrade keeping an edited policy,
//! a broken policy stopping the install with nothing changed, and the unit checked by
//! systemd's own `systemd-analyze verify` where it is installed.

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
    let policy = root.path().join("etc/gpubook/policy.toml");
    std::fs::create_dir_all(policy.parent().unwrap()).unwrap();
    std::fs::write(&policy, "max_booking = \"forever\"\n").unwrap();
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
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        if std::env::var_os("GPUBOOK_REQUIRE_SERVICES").is_some() {
            panic!("systemd-analyze is not installed");
        }
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
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
