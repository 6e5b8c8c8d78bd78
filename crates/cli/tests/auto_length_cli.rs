//! `--for auto` against real agents (run by root, as in every CLI test with Unix users), as a
//! real non-root user: the length is the server's suggestion from that user's own past runs of
//! the command, and what it rests on is said; with no runs to go by, without a command, and for
//! `move` it is refused as a usage error; with `--server any` each server's own history counts.
//!
//! Needs root (to create the user and run jobs as them); CI sets GPUBOOK_REQUIRE_ROOT_TESTS=1.

mod support;

use gpubook_testkit::require_root;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use support::{ensure_user, text, Ids, Lab};

/// A one-second grid, so slots start a moment from now.
const ONE_SECOND_GRID: &str = "granularity = \"1s\"\n";
/// Books with `--for auto`.
const PLANNER: &str = "gpb-planner";

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// A booking's length in seconds, from its JSON.
fn length(b: &serde_json::Value) -> i64 {
    let t = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(b["interval"][k].as_str().unwrap())
            .unwrap()
            .timestamp()
    };
    t("end") - t("start")
}

/// One finished run of `cmd` on `lab` by `user`: the history a suggestion rests on.
fn past_run(lab: &Lab, user: Ids, cmd: &[&str]) {
    let mut args = vec!["run", "--count", "1", "--asap", "--for", "1h", "--"];
    args.extend_from_slice(cmd);
    let o = lab.gpubook(Some(user), &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn for_auto_books_the_length_the_server_suggests_from_your_runs() {
    if !require_root("for_auto_books_the_length_the_server_suggests_from_your_runs") {
        return;
    }
    let user = ensure_user(PLANNER, &[]);
    let lab = Lab::start(ONE_SECOND_GRID, "sim:2");

    // Nothing to go by yet: a usage error that says so, and nothing is booked.
    let auto = ["book", "--count", "1", "--asap", "--for", "auto", "--"];
    let o = lab.gpubook(Some(user), &[&auto[..], &["sleep", "1"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no past run"),
        "{}",
        text(&o)
    );
    let o = lab.gpubook(Some(user), &["--json", "ls", "--mine"]);
    assert_eq!(json(&o)["bookings"], serde_json::json!([]), "{}", text(&o));

    past_run(&lab, user, &["sleep", "1"]);

    // Now the length is suggested (the run took a second; suggestions are whole 5 minutes)
    // and what it rests on is said.
    let o = lab.gpubook(Some(user), &[&auto[..], &["sleep", "1"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("your last 1 run of this took") && err.contains("; booking 5m"),
        "{}",
        text(&o)
    );
    let o = lab.gpubook(
        Some(user),
        &[
            "--json", "book", "--count", "1", "--start", "+2h", "--for", "auto", "--", "sleep", "1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(length(&json(&o)["booking"]), 300, "{}", text(&o));
    let later = json(&o)["booking"]["id"].to_string();

    // `run --for auto` takes it too, and exits with the job's status.
    let o = lab.gpubook(
        Some(user),
        &[
            "run", "--count", "1", "--asap", "--for", "auto", "--", "sleep", "1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("; booking 5m"),
        "{}",
        text(&o)
    );

    // Another command (or GPU count) has no runs of its own.
    let o = lab.gpubook(
        Some(user),
        &[
            "book", "--count", "2", "--asap", "--for", "auto", "--", "sleep", "1",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // Without a command, and for `move`: refused before anything is asked.
    let o = lab.gpubook(
        Some(user),
        &["book", "--count", "1", "--asap", "--for", "auto"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("needs the command after --"),
        "{}",
        text(&o)
    );
    let o = lab.gpubook(
        Some(user),
        &["move", &later, "--start", "+3h", "--for", "auto"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--for auto is for book and run"),
        "{}",
        text(&o)
    );
}

#[test]
fn with_server_any_each_server_suggests_from_its_own_runs() {
    if !require_root("with_server_any_each_server_suggests_from_its_own_runs") {
        return;
    }
    let user = ensure_user(PLANNER, &[]);
    let known = Lab::start(ONE_SECOND_GRID, "sim:1");
    let fresh = Lab::start(ONE_SECOND_GRID, "sim:4");
    past_run(&known, user, &["sleep", "1"]);

    // The person's list: both servers (and "this computer", which has no agent here).
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let list = dir.path().join("servers.toml");
    let any = |args: &[&str]| {
        let mut c = Command::new(&known.cli);
        c.args(["--server", "any"])
            .args(args)
            .env_remove("GPUBOOK_SERVER")
            .env("GPUBOOK_SERVERS", &list)
            .env("GPUBOOK_SOCKET", dir.path().join("no-agent.sock"))
            .env("TZ", "UTC")
            .current_dir("/")
            .uid(user.0)
            .gid(user.1);
        c.output().unwrap()
    };
    for (name, lab) in [("known", &known), ("fresh", &fresh)] {
        let spec = format!("unix:{}", lab.socket.display());
        let mut c = Command::new(&known.cli);
        c.args(["servers", "add", name, &spec])
            .env("GPUBOOK_SERVERS", &list)
            .uid(user.0)
            .gid(user.1);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }

    // "fresh" is emptier (4 free GPUs) but has no runs of this command: only "known" can say
    // how long, so the booking goes there, for its suggestion.
    let o = any(&[
        "book", "--count", "1", "--asap", "--for", "auto", "--", "sleep", "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("known: your last 1 run of this took"),
        "{}",
        text(&o)
    );
    assert!(
        err.contains("fresh: cannot take it") && err.contains("no past run"),
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("Booked on known"),
        "{}",
        text(&o)
    );
    let o = any(&[
        "--json", "book", "--count", "1", "--asap", "--for", "auto", "--", "sleep", "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["server"], "known", "{}", text(&o));
    assert_eq!(length(&v["booking"]["booking"]), 300, "{}", text(&o));

    // A command neither server has seen: a usage error naming both.
    let o = any(&[
        "book", "--count", "1", "--asap", "--for", "auto", "--", "sleep", "2",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("known:") && err.contains("fresh:"),
        "{}",
        text(&o)
    );
}
