//! Jobs from the command line, as real non-root users against a shared agent run by root:
//! the job's log is its owner's (and the admins') alone, both as a file and through
//! `gpubook logs`; `gpubook run` streams the log and exits with the job's status; and an end
//! signal that is not a signal is refused when booking.
//!
//! Needs root (to create users and to run jobs as them); CI runs as root and sets
//! GPUBOOK_REQUIRE_ROOT_TESTS=1 so these cannot silently skip there.

mod support;

use gpubook_testkit::require_root;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use support::{ensure_user, text, Ids, Lab};

/// A one-second grid, so slots can start a moment from now.
const ONE_SECOND_GRID: &str = "granularity = \"1s\"\n";

/// Owns the jobs.
const JOBBER: &str = "gpb-jobber";
/// Another non-root user.
const OTHER: &str = "gpb-other";

/// Runs `program args` as `user`.
fn run_as(user: Ids, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir("/")
        .uid(user.0)
        .gid(user.1)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn json(bytes: &[u8], o: &Output) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// Booking `id` as `user` lists it (past ones included).
fn listed(lab: &Lab, user: Option<Ids>, id: u64) -> serde_json::Value {
    let o = lab.gpubook(user, &["--json", "ls", "--past"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = json(&o.stdout, &o);
    v["bookings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("booking {id} is not listed: {}", text(&o)))
}

#[test]
fn a_jobs_log_is_for_its_owner_and_the_admins_only() {
    if !require_root("a_jobs_log_is_for_its_owner_and_the_admins_only") {
        return;
    }
    let jobber = ensure_user(JOBBER, &[]);
    let other = ensure_user(OTHER, &[]);
    let lab = Lab::start(ONE_SECOND_GRID, "sim:2");

    let o = lab.gpubook(
        Some(jobber),
        &[
            "--json",
            "book",
            "--gpu",
            "0",
            "--asap",
            "--for",
            "1h",
            "--",
            "sh",
            "-c",
            "echo 'to stdout: epoch 1 loss 0.5'; echo 'to stderr: warning' >&2",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = json(&o.stdout, &o)["booking"]["id"].as_u64().unwrap();
    let ids = id.to_string();
    // `gpubook wait` until the job is over; it exits with the job's status.
    let o = lab.gpubook(Some(jobber), &["wait", &ids]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let b = listed(&lab, Some(jobber), id);
    assert_eq!(b["run"]["state"], "finished", "{b:#}");
    let log = PathBuf::from(
        b["run"]["log"]
            .as_str()
            .expect("the owner sees the log's path"),
    );

    // The file: the owner's, nobody else's.
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!(meta.uid(), jobber.0, "the log belongs to its owner");
    assert_eq!(
        meta.mode() & 0o077,
        0,
        "others may open the log: {:o}",
        meta.mode()
    );
    // The agent's state directory is its own (0700): the log is read through the agent, by
    // its owner and the admins only.
    let o = run_as(other, "cat", &[log.to_str().unwrap()]);
    assert!(
        !o.status.success(),
        "another user read the log: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        text(&o)
    );
    // Nor can they list the log directory to find it.
    let o = run_as(other, "ls", &[log.parent().unwrap().to_str().unwrap()]);
    assert!(!o.status.success(), "{}", text(&o));
    // Another user's listing does not even show where it is.
    assert!(listed(&lab, Some(other), id)["run"]["log"].is_null());

    // Through the agent: the owner reads it...
    let o = lab.gpubook(Some(jobber), &["logs", &ids]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("to stdout: epoch 1 loss 0.5") && out.contains("to stderr: warning"),
        "{}",
        text(&o)
    );
    // ...another user is refused...
    let o = lab.gpubook(Some(other), &["logs", &ids]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(o.stdout.is_empty(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(JOBBER),
        "the refusal should say whose log it is: {}",
        text(&o)
    );
    let o = lab.gpubook(Some(other), &["--json", "logs", &ids]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(json(&o.stderr, &o)["error"]["kind"], "not_allowed");
    // ...and an admin (root) may read it.
    let o = lab.gpubook(None, &["logs", &ids]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("to stdout: epoch 1 loss 0.5"));
    drop(lab);
}

#[test]
fn gpubook_run_streams_the_log_and_exits_with_the_jobs_status() {
    if !require_root("gpubook_run_streams_the_log_and_exits_with_the_jobs_status") {
        return;
    }
    let jobber = ensure_user(JOBBER, &[]);
    let lab = Lab::start(ONE_SECOND_GRID, "sim:2");
    let o = lab.gpubook(
        Some(jobber),
        &[
            "run",
            "--gpu",
            "0",
            "--asap",
            "--for",
            "1h",
            "--",
            "sh",
            "-c",
            "echo hello; exit 7",
        ],
    );
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines().any(|l| l == "hello"),
        "the job's output should be streamed: {}",
        text(&o)
    );
    // The job ended early: the rest of its hour went back to the lab.
    let o = lab.gpubook(Some(jobber), &["--json", "ls", "--past", "--mine"]);
    let v = json(&o.stdout, &o);
    let b = &v["bookings"][0];
    assert_eq!(b["run"]["exit_code"], 7, "{b:#}");
    assert_eq!(b["state"], "ended", "{b:#}");
    assert_eq!(b["owner"], JOBBER);
    drop(lab);
}

#[test]
fn gpubook_book_refuses_an_end_signal_that_is_not_a_signal() {
    if !require_root("gpubook_book_refuses_an_end_signal_that_is_not_a_signal") {
        return;
    }
    let jobber = ensure_user(JOBBER, &[]);
    let lab = Lab::start(ONE_SECOND_GRID, "sim:2");
    let o = lab.gpubook(
        Some(jobber),
        &[
            "book",
            "--gpu",
            "0",
            "--start",
            "+1h",
            "--for",
            "1h",
            "--end-signal",
            "SIGBOGUS",
            "--",
            "./train.sh",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("SIGBOGUS"),
        "{}",
        text(&o)
    );
    let o = lab.gpubook(Some(jobber), &["--json", "ls", "--past"]);
    let v = json(&o.stdout, &o);
    assert_eq!(v["bookings"].as_array().map(Vec::len), Some(0), "{v:#}");
    drop(lab);
}

#[test]
fn a_relative_cwd_is_read_from_where_you_are_for_the_local_agent() {
    if !require_root("a_relative_cwd_is_read_from_where_you_are_for_the_local_agent") {
        return;
    }
    let lab = Lab::start(ONE_SECOND_GRID, "sim:2");
    let here = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(here.path().join("runs/7")).unwrap();
    let mut cmd = lab.command(
        None,
        &[
            "--json",
            "book",
            "--gpu",
            "0",
            "--start",
            "+1h",
            "--for",
            "1h",
            "--cwd",
            "runs/7",
            "--",
            "./train.sh",
        ],
    );
    let o = cmd.current_dir(here.path()).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let id = json(&o.stdout, &o)["booking"]["id"].as_u64().unwrap();
    // Stored absolute: the agent never sees the CLI's directory.
    let want = std::fs::canonicalize(here.path()).unwrap().join("runs/7");
    let b = listed(&lab, None, id);
    assert_eq!(b["job"]["cwd"], want.to_str().unwrap(), "{b:#}");
}

#[test]
fn a_relative_cwd_is_refused_for_a_server_over_ssh() {
    let dir = tempfile::tempdir().unwrap();
    let server = "gpb@127.0.0.1:1";
    for cwd in ["runs/7", "~/runs/7"] {
        let o = Command::new(env!("CARGO_BIN_EXE_gpubook"))
            .args(["--server", server, "book", "--gpu", "0", "--start", "+1h"])
            .args(["--for", "1h", "--cwd", cwd, "--", "./train.sh"])
            .env("GPUBOOK_SERVERS", dir.path().join("servers.toml"))
            .env_remove("GPUBOOK_SERVER")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        // Refused before anything is dialled: a usage error, not "unreachable".
        assert_eq!(o.status.code(), Some(2), "{cwd}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("--cwd must be an absolute path on {server}"))
                && err.contains("give an absolute path on the server"),
            "{cwd}: {}",
            text(&o)
        );
    }
}
