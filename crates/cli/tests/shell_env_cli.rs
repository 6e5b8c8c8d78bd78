//! `gpubook env N` and `gpubook shell N` against a real agent run by root, as real users: the
//! owner gets exactly the booked GPUs while the slot is on; another person, a booking not
//! started yet and one that is over are refused with their own error kinds; a process started
//! through `gpubook shell` runs as the owner, so the agent counts it as the booking's use and
//! never as an intruder.
//!
//! Needs root (to create users and run as them); CI sets GPUBOOK_REQUIRE_ROOT_TESTS=1.

mod support;

use gpubook_testkit::require_root;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{ensure_user, text, Ids, Lab};

const ONE_SECOND_GRID: &str = "granularity = \"1s\"\n";
const OWNER: &str = "gpb-sheller";
const OTHER: &str = "gpb-shell-other";

fn json(bytes: &[u8], o: &Output) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// The booking `id` as its owner lists it.
fn booking(lab: &Lab, user: Ids, id: u64) -> serde_json::Value {
    let o = lab.gpubook(Some(user), &["--json", "ls", "--past"]);
    json(&o.stdout, &o)["bookings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("booking {id} not listed: {}", text(&o)))
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The error kind of a `--json` failure.
fn error_kind(o: &Output) -> String {
    json(&o.stderr, o)["error"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_booked_gpus_in_the_owner_s_shell_and_nobody_else_s() {
    if !require_root("the_booked_gpus_in_the_owner_s_shell_and_nobody_else_s") {
        return;
    }
    let owner = ensure_user(OWNER, &[]);
    let other = ensure_user(OTHER, &[]);
    let lab = Lab::start(ONE_SECOND_GRID, "sim:3");
    let book = |args: &[&str]| {
        let o = lab.gpubook(Some(owner), &[&["--json", "book"], args].concat());
        assert!(o.status.success(), "{}", text(&o));
        json(&o.stdout, &o)["booking"].clone()
    };

    // Not started yet: refused, saying when it starts.
    let later = book(&["--gpu", "0", "--start", "+2h", "--for", "1h"]);
    let later_id = later["id"].to_string();
    let o = lab.gpubook(Some(owner), &["--json", "env", &later_id]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(error_kind(&o), "not_started", "{}", text(&o));

    // Two GPUs, from now.
    let now = book(&["--gpu", "1,2", "--asap", "--for", "1h"]);
    let id = now["id"].as_u64().unwrap();
    let ids = id.to_string();
    wait_for("the slot to start", || {
        booking(&lab, owner, id)["state"] == "active"
    });
    let gpus: Vec<String> = now["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect();
    assert_eq!(gpus.len(), 2);

    // `eval "$(gpubook env N)"` in the owner's shell: exactly the booked GPUs.
    let script = format!(
        "eval \"$({} --server unix:{} env {ids})\" && printf '%s|%s|%s' \
         \"$CUDA_VISIBLE_DEVICES\" \"$CUDA_DEVICE_ORDER\" \"$GPUBOOK_BOOKING_ID\"",
        lab.cli.display(),
        lab.socket.display()
    );
    let o = Command::new("sh")
        .args(["-c", &script])
        .current_dir("/")
        .uid(owner.0)
        .gid(owner.1)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}|PCI_BUS_ID|{id}", gpus.join(",")),
        "{}",
        text(&o)
    );
    // The job's key is not given out: the shell is not the job.
    let o = lab.gpubook(Some(owner), &["env", &ids]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("GPUBOOK_JOB_KEY"),
        "{}",
        text(&o)
    );

    // `gpubook shell N -- CMD` on this computer (a local agent): the same variables.
    let o = lab
        .command(
            Some(owner),
            &["shell", &ids, "--", "printenv", "CUDA_VISIBLE_DEVICES"],
        )
        .env("SHELL", "/bin/bash")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        gpus.join(","),
        "{}",
        text(&o)
    );
    // Its exit status is gpubook's.
    let o = lab
        .command(Some(owner), &["shell", &ids, "--", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));

    // Another person: refused, and told whose it is; an admin is no exception by design.
    // (Root is the agent's admin.)
    for (who, cmd) in [(Some(other), "env"), (Some(other), "shell"), (None, "env")] {
        let o = lab.gpubook(who, &["--json", cmd, &ids]);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert_eq!(error_kind(&o), "not_allowed", "{}", text(&o));
    }

    // A process started through `gpubook shell` runs as the owner: on the booked GPU (the
    // simulated GPUs report it from their processes file, with the user its uid names) it is
    // the booking's use, never an intruder.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let pid_file = dir.path().join("pid");
    let mut train = lab
        .command(
            Some(owner),
            &[
                "shell",
                &ids,
                "--",
                &format!("echo $$ > {}; exec sleep 60", pid_file.display()),
            ],
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the shell's process", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some(owner.0.to_string().as_str()),
        "the shell's process runs as the owner: {uid_line}"
    );
    let state_dir = lab.socket.parent().unwrap().parent().unwrap().join("state");
    let procs = serde_json::json!([{
        "gpu": gpus[0], "pid": pid, "user": OWNER, "used_bytes": 4u64 << 30, "util": 60
    }]);
    let tmp = state_dir.join("sim-processes.json.tmp");
    std::fs::write(&tmp, procs.to_string()).unwrap();
    std::fs::rename(&tmp, state_dir.join("sim-processes.json")).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let o = lab.gpubook(Some(owner), &["release", &ids]);
    assert!(o.status.success(), "{}", text(&o));
    wait_for("the usage to be recorded", || {
        !booking(&lab, owner, id)["usage"].is_null()
    });
    let usage = booking(&lab, owner, id)["usage"].clone();
    assert!(usage["gpu_seconds_used"].as_i64().unwrap() > 0, "{usage:#}");
    assert!(
        usage["peak_memory"].as_u64().unwrap() >= 4 << 30,
        "{usage:#}"
    );
    let o = lab.gpubook(Some(owner), &["usage", &ids]);
    assert!(o.status.success(), "{}", text(&o));
    // No intruder was announced on the booking.
    let mut watch = lab
        .command(Some(owner), &["--json", "watch", "--after", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let _ = watch.kill();
    let events = watch.wait_with_output().unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(events.contains("slot_started"), "{events}");
    assert!(!events.contains("\"intruder\""), "{events}");

    // Over: refused as ended.
    let o = lab.gpubook(Some(owner), &["--json", "env", &ids]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(error_kind(&o), "ended", "{}", text(&o));
    let _ = train.kill();
    let _ = train.wait();
    let _ = Command::new("kill").arg(pid.to_string()).status();
}
