//! Every subcommand, against a real shared agent, (1) writing into a pipe whose reader has gone:
//! it ends quietly (SIGPIPE, or its own status when it had nothing to print), never with a
//! panic or a "Broken pipe" message; and (2) with `--json`: what it prints on stdout parses as
//! JSON, and so does every line on stderr, errors included (`{"error": {"kind", "message",
//! "conflicts"}}`), argument errors too. The real binary, real processes.
//!
//! Needs root (the jobs run as a real user); CI sets GPUBOOK_REQUIRE_ROOT_TESTS=1.

mod support;

use gpubook_testkit::require_root;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use support::{ensure_user, text, Ids, Lab};

/// Bookings longer than 4 hours wait for an admin: something to approve and deny.
const APPROVAL_OVER_4H: &str = "max_booking = \"4h\"\nover_policy = \"approval\"\n";

/// Owns the bookings and their jobs; root is the admin.
const PIPER: &str = "gpb-piper";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// stdout is a pipe whose reader is closed.
    ClosedPipe,
    /// `--json` first, stdout and stderr read.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// The command succeeds.
    Ok,
    /// The command fails (as it should: no CalDAV server, no password).
    Fails,
    /// Either, by what the machine has (a keyring or not); said the same way each time.
    Either,
}

/// The writing end of a pipe whose reader has gone: the stdin of a `true` that has ended.
fn closed_pipe() -> Stdio {
    let mut reader = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let writer = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    Stdio::from(writer)
}

/// A command's status within `limit`, or a failed test (the command is killed first).
fn finish(mut child: Child, what: &str, limit: Duration) -> (ExitStatus, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    (status, err)
}

/// Every JSON value in `bytes`, one after another (a document, or one a line); a test failure
/// if anything else is there.
fn json_values(bytes: &[u8], what: &str) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<serde_json::Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// The CLI as `user` talking to the lab's agent: named by `--server`, or as "local" for the
/// commands that take no `--server` (`servers`, `caldav login`, `caldav logout`) and where
/// `args` name their own.
fn command(lab: &Lab, user: Option<Ids>, args: &[&str], env: &Env) -> Command {
    let own = ["servers", "--server", "login", "logout"];
    let mut c = if args.iter().any(|a| own.contains(a)) {
        let mut c = Command::new(&lab.cli);
        c.args(args)
            .env_remove("GPUBOOK_SERVER")
            .env("GPUBOOK_SOCKET", &lab.socket)
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .current_dir("/");
        c
    } else {
        lab.command(user, args)
    };
    c.env("GPUBOOK_SERVERS", &env.servers)
        .env("XDG_STATE_HOME", &env.state)
        .env("XDG_CONFIG_HOME", &env.state);
    c
}

/// Where the CLI keeps what it keeps (the server list, the feed's token).
struct Env {
    servers: std::path::PathBuf,
    state: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Runs `args` (as `user`) in `mode` and checks what a script or a pipeline would see.
fn check(lab: &Lab, env: &Env, mode: Mode, user: Option<Ids>, args: &[&str], expect: Expect) {
    let what = format!("{mode:?} gpubook {}", args.join(" "));
    let serves = args.first() == Some(&"feed");
    match mode {
        Mode::ClosedPipe => {
            let writer = closed_pipe();
            let child = command(lab, user, args, env)
                .stdout(writer)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let (status, err) = finish(child, &what, Duration::from_secs(60));
            assert!(
                !err.contains("panicked") && !err.to_lowercase().contains("broken pipe"),
                "{what}: {err}"
            );
            assert_ne!(status.code(), Some(101), "{what} panicked: {err}");
            match expect {
                // A pipeline's reader that is gone ends the writer by SIGPIPE; a shell
                // whose child was so ended reports 128 + SIGPIPE, as sh and bash do.
                Expect::Ok => assert!(
                    status.success()
                        || status.signal() == Some(libc::SIGPIPE)
                        || status.code() == Some(128 + libc::SIGPIPE),
                    "{what} ended with {status:?}: {err}"
                ),
                Expect::Fails => assert!(!status.success(), "{what} succeeded: {err}"),
                Expect::Either => {}
            }
            assert!(
                !err.contains("cannot write"),
                "{what}: a closed pipe is not an error to report: {err}"
            );
        }
        Mode::Json => {
            let mut full = vec!["--json"];
            full.extend_from_slice(args);
            if serves {
                // It serves until stopped: its first answer is the URL, as JSON.
                let mut child = command(lab, user, &full, env)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let out = child.stdout.take().unwrap();
                let first = serde_json::Deserializer::from_reader(out)
                    .into_iter::<serde_json::Value>()
                    .next();
                let _ = child.kill();
                let _ = child.wait();
                let first = first
                    .unwrap_or_else(|| panic!("{what} printed nothing"))
                    .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
                assert!(first["url"].is_string(), "{what}: {first}");
                return;
            }
            let o: Output = command(lab, user, &full, env).output().unwrap();
            let values = json_values(&o.stdout, &what);
            let err = String::from_utf8_lossy(&o.stderr);
            let err_lines: Vec<serde_json::Value> = err
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("{what}: stderr is not JSON ({e}): {l}"))
                })
                .collect();
            let expect = match expect {
                Expect::Either if o.status.success() => Expect::Ok,
                Expect::Either => Expect::Fails,
                known => known,
            };
            match expect {
                Expect::Ok => {
                    assert!(o.status.success(), "{what}: {}", text(&o));
                    assert!(!values.is_empty(), "{what} printed nothing: {}", text(&o));
                }
                Expect::Fails | Expect::Either => {
                    assert!(!o.status.success(), "{what}: {}", text(&o));
                    assert_ne!(o.status.code(), Some(101), "{what}: {}", text(&o));
                    let e = &err_lines
                        .last()
                        .unwrap_or_else(|| panic!("{what}: no error"))["error"];
                    assert!(
                        e["kind"].is_string()
                            && e["message"].is_string()
                            && e["conflicts"].is_array(),
                        "{what}: {}",
                        text(&o)
                    );
                }
            }
        }
    }
}

/// Books as `user` (with --json) and returns the booking's number.
fn book(lab: &Lab, user: Option<Ids>, args: &[&str]) -> String {
    let mut full = vec!["--json", "book"];
    full.extend_from_slice(args);
    let o = lab.gpubook(user, &full);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["booking"]["id"].to_string()
}

/// Waits until booking `id`'s slot has started.
fn started(lab: &Lab, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = lab.gpubook(None, &["--json", "ls"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let active = v["bookings"].as_array().unwrap().iter().any(|b| {
            b["id"].as_u64().map(|n| n.to_string()).as_deref() == Some(id) && b["state"] == "active"
        });
        if active {
            return;
        }
        assert!(Instant::now() < deadline, "booking {id} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_subcommand_ends_quietly_into_a_closed_pipe_and_speaks_json_with_json() {
    if !require_root("every_subcommand_ends_quietly_into_a_closed_pipe_and_speaks_json_with_json") {
        return;
    }
    let piper = Some(ensure_user(PIPER, &[]));
    let lab = Lab::start(APPROVAL_OVER_4H, "sim:2");
    let dir = tempfile::tempdir().unwrap();
    let env = Env {
        servers: dir.path().join("servers.toml"),
        state: dir.path().join("state"),
        _dir: dir,
    };
    let caldav = ["--url", "http://127.0.0.1:9/cal/", "--user", "nobody"];
    for (i, mode) in [Mode::ClosedPipe, Mode::Json].into_iter().enumerate() {
        // Each round on its own hours, so the second finds the first's bookings out of its way.
        let at = |h: usize| format!("+{}h", 2 + 40 * i + h);
        let c = |user: Option<Ids>, args: &[&str], expect: Expect| {
            check(&lab, &env, mode, user, args, expect)
        };
        use Expect::{Either, Fails, Ok};
        c(None, &["whoami"], Ok);
        c(None, &["gpus"], Ok);
        c(None, &["ls"], Ok);
        c(
            piper,
            &["book", "--gpu", "0", "--start", &at(0), "--for", "1h"],
            Ok,
        );
        let id = book(
            &lab,
            piper,
            &["--gpu", "0", "--start", &at(2), "--for", "1h"],
        );
        c(piper, &["cancel", &id], Ok);
        let id = book(
            &lab,
            piper,
            &["--gpu", "0", "--start", &at(4), "--for", "1h"],
        );
        c(piper, &["extend", &id, "--by", "1h"], Ok);
        c(piper, &["move", &id, "--start", &at(8), "--for", "2h"], Ok);
        let id = book(
            &lab,
            piper,
            &["--gpu", "0", "--start", "now", "--for", "30m"],
        );
        started(&lab, &id);
        c(piper, &["env", &id], Ok);
        // A shell speaks for itself, not in JSON: into a closed pipe only.
        if matches!(mode, Mode::ClosedPipe) {
            c(
                piper,
                &["shell", &id, "--", "printenv CUDA_VISIBLE_DEVICES"],
                Ok,
            );
        }
        c(piper, &["release", &id], Ok);
        let id = book(
            &lab,
            piper,
            &["--gpu", "1", "--start", &at(12), "--for", "8h"],
        );
        c(None, &["approve", &id], Ok);
        let id = book(
            &lab,
            piper,
            &["--gpu", "1", "--start", &at(22), "--for", "8h"],
        );
        c(None, &["deny", &id, "--reason", "not now"], Ok);
        c(None, &["watch", "--after", "0", "--count", "2"], Ok);
        c(None, &["policy"], Ok);
        c(
            None,
            &[
                "maintenance",
                "--gpu",
                "1",
                "--start",
                &at(30),
                "--for",
                "1h",
                "--reason",
                "driver 570",
            ],
            Ok,
        );
        c(None, &["maintenance", "ls"], Ok);
        // Each round makes one period: m1, then m2.
        c(None, &["maintenance", "end", &format!("m{}", i + 1)], Ok);
        c(
            piper,
            &["notify", "set", "--webhook", "http://127.0.0.1:9/hook"],
            Ok,
        );
        c(piper, &["notify", "show"], Ok);
        c(piper, &["notify", "clear"], Ok);
        let id = book(
            &lab,
            piper,
            &[
                "--gpu", "1", "--start", "now", "--for", "15m", "--", "echo out",
            ],
        );
        c(piper, &["wait", &id], Ok);
        c(piper, &["logs", &id], Ok);
        c(piper, &["logs", "-f", &id], Ok);
        c(
            piper,
            &[
                "run", "--gpu", "1", "--start", "now", "--for", "15m", "--", "echo out",
            ],
            Ok,
        );
        c(None, &["usage"], Ok);
        c(None, &["report"], Ok);
        c(None, &["report", "--by", "gpu", "--from", "-1d"], Ok);
        c(None, &["ics"], Ok);
        c(None, &["feed", "--port", "0"], Ok);
        c(None, &["servers"], Ok);
        c(
            None,
            &["servers", "add", "lab1", "alice@lab1.example.org"],
            Ok,
        );
        c(None, &["servers", "rm", "lab1"], Ok);
        // No CalDAV server, no password on stdin: each fails, and says so as JSON.
        let mut sync = vec!["caldav", "sync", "--once", "--password-stdin"];
        sync.extend(caldav);
        c(None, &sync, Fails);
        let mut logout = vec!["caldav", "logout"];
        logout.extend(caldav);
        c(None, &logout, Either);
        let mut login = vec!["caldav", "login", "--password-stdin"];
        login.extend(caldav);
        c(None, &login, Fails);
        // Refused before anything is sent: a booking without a job, a contradiction, a typo.
        c(piper, &["wait", "1"], Fails);
        c(None, &["ls", "--all"], Fails);
        c(None, &["--server", "any", "cancel", "1"], Fails);
        c(None, &["--server", "local", "servers"], Fails);
        let mut named_logout = vec!["--server", "local"];
        named_logout.extend(&logout);
        c(None, &named_logout, Fails);
        c(None, &["book", "--bogus"], Fails);
        c(
            None,
            &[
                "book",
                "--gpu",
                "0",
                "--min-mem",
                "40G",
                "--start",
                "now",
                "--for",
                "1h",
            ],
            Fails,
        );
        c(
            None,
            &["book", "--gpu", "0", "--start", "now", "--for", "-1h"],
            Fails,
        );
    }
}

#[test]
fn argument_errors_with_json_are_json_with_clap_s_status() {
    // No agent needed: the arguments are read before anything is dialled.
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gpubook"))
            .args(args)
            .env_remove("GPUBOOK_SERVER")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for args in [
        &["--json", "book", "--bogus"][..],
        &["--json"],
        &["book", "--count", "x", "--json", "--asap", "--for", "1h"],
        &["--json", "extend", "3"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(o.stdout.is_empty(), "{args:?}: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stderr)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", text(&o)));
        assert_eq!(v["error"]["kind"], "invalid", "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(!m.is_empty() && !m.starts_with("error:"), "{m}");
    }
    // Without --json: clap's text, same status; a --json after `--` is the job's.
    let o = run(&["book", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with("error:"),
        "{}",
        text(&o)
    );
    let o = run(&["run", "--bogus", "--", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with("error:"),
        "{}",
        text(&o)
    );
    // Help is help, even with --json.
    let o = run(&["--json", "--help"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Usage"));
}
