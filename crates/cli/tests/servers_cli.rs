//! `gpubook` across several servers, against real agents in their own processes: the server
//! list (`gpubook servers`), `gpus --all` and `ls --all` with one server unreachable,
//! `book --asap --server any` placed where the start is soonest, and `watch` coming back when
//! its agent is SIGKILLed and started again.

use gpubook_testkit::agent::AgentProcess;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The CLI with its server list in `dir` and "local" at `local` (or nowhere).
fn gpubook(dir: &Path, local: Option<&Path>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gpubook"));
    c.env("GPUBOOK_SERVERS", dir.join("servers.toml"))
        .env(
            "GPUBOOK_SOCKET",
            local
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.join("no-local-agent.sock")),
        )
        .env_remove("GPUBOOK_SERVER")
        .env("TZ", "UTC")
        .stdin(Stdio::null());
    c
}

fn run(dir: &Path, local: Option<&Path>, args: &[&str]) -> Output {
    gpubook(dir, local).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn add(dir: &Path, name: &str, socket: &Path) {
    ok(run(
        dir,
        None,
        &[
            "servers",
            "add",
            name,
            &format!("unix:{}", socket.display()),
        ],
    ));
}

#[test]
fn the_server_list_is_kept_in_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(run(d, None, &["servers"]));
    assert!(out.contains("local"), "{out}");
    // --all with only "local" (down here) keeps the many-server shape: a list, one entry each.
    let o = run(d, None, &["--json", "gpus", "--all"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json[0]["server"], "local", "{}", text(&o));
    assert_eq!(json[0]["error"]["kind"], "unavailable");
    ok(run(
        d,
        None,
        &["servers", "add", "lab1", "alice@lab1.example.org:2222"],
    ));
    ok(run(d, None, &["servers", "add", "lab2", "ssh://bob@lab2"]));
    let out = ok(run(d, None, &["servers", "ls"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[1].starts_with("local"), "{out}");
    assert!(lines[2].starts_with("lab1") && lines[2].contains("alice@lab1.example.org:2222"));
    let json: serde_json::Value =
        serde_json::from_str(&ok(run(d, None, &["--json", "servers", "ls"]))).unwrap();
    assert_eq!(json[2]["spec"], "ssh://bob@lab2");

    // Bad input: a duplicate (3), a bad name or address (2), an unknown one (4).
    let o = run(d, None, &["servers", "add", "lab1", "lab9"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = run(d, None, &["servers", "add", "any", "lab9"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = run(d, None, &["servers", "add", "lab3", "alice@lab3:notaport"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("port"));
    let o = run(d, None, &["servers", "rm", "nope"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    ok(run(d, None, &["servers", "rm", "lab1"]));
    assert!(!ok(run(d, None, &["servers"])).contains("lab1"));

    // A broken file is reported with its line and left alone.
    let file = d.join("servers.toml");
    std::fs::write(&file, "[[server]]\nname = \"x\"\nspec = 42\n").unwrap();
    let o = run(d, None, &["servers", "add", "lab4", "lab4"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("servers.toml:3"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "[[server]]\nname = \"x\"\nspec = 42\n"
    );
    // ...and only matters to a command that needs a name from it.
    let o = run(d, None, &["--server", "lab4", "gpus"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = run(d, None, &["--server", "unix:/nonexistent.sock", "gpus"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_servers_answer_together_and_one_down_does_not_hide_the_others() {
    let a = AgentProcess::named("lab-a", 2).await;
    let b = AgentProcess::named("lab-b", 4).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add(d, "b", &b.socket());
    add(d, "gone", &d.join("nothing-here.sock"));
    // "local" is lab-a.
    let local = Some(a.socket());
    let local = local.as_deref();

    let o = run(d, local, &["gpus", "--all"]);
    let out = ok(o.clone());
    assert!(out.contains("lab-a") && out.contains("lab-b"), "{out}");
    assert!(out.contains("SIM-lab-b-3"), "{out}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("gone:") && err.contains("nothing-here.sock"),
        "{err}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&ok(run(d, local, &["--json", "gpus", "--all"]))).unwrap();
    assert_eq!(json[0]["server"], "local");
    assert_eq!(json[1]["gpus"]["gpus"].as_array().unwrap().len(), 4);
    assert_eq!(json[2]["error"]["kind"], "unavailable");

    // Both agents busy in different ways: lab-a's two GPUs for 3 hours, three of lab-b's
    // four for 1 hour, from the next quarter hour.
    ok(run(
        d,
        local,
        &[
            "book", "--gpu", "0,1", "--start", "+20m", "--for", "3h", "--title", "busy-a",
        ],
    ));
    ok(run(
        d,
        local,
        &[
            "--server", "b", "book", "--gpu", "0,1,2", "--start", "+20m", "--for", "1h", "--title",
            "busy-b",
        ],
    ));

    let o = run(
        d,
        local,
        &[
            "--server", "any", "book", "--asap", "--count", "2", "--for", "4h", "--title", "train",
        ],
    );
    let out = ok(o.clone());
    assert!(out.starts_with("Booked on b:"), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("local: from") && err.contains("b: from"),
        "{err}"
    );

    let out = ok(run(d, local, &["ls", "--all"]));
    let rows: Vec<&str> = out.lines().collect();
    assert!(rows[0].starts_with("SERVER"), "{out}");
    assert_eq!(rows.len(), 4, "{out}");
    assert!(
        rows.iter()
            .any(|r| r.starts_with("b ") && r.contains("train")),
        "{out}"
    );
    assert!(rows
        .iter()
        .any(|r| r.starts_with("local ") && r.contains("busy-a")));

    // A comma list, JSON: each server's bookings under its name.
    let json: serde_json::Value =
        serde_json::from_str(&ok(run(d, local, &["--json", "--server", "local,b", "ls"]))).unwrap();
    assert_eq!(json[1]["server"], "b");
    assert_eq!(json[1]["bookings"]["bookings"].as_array().unwrap().len(), 2);

    // More GPUs than any server has: refused (3), saying why for each.
    let o = run(
        d,
        local,
        &[
            "--server", "local,b", "book", "--asap", "--count", "5", "--for", "1h",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // Only unreachable servers: 5. A command for one server given several: usage (2).
    let o = run(d, local, &["--server", "gone,unix:/nonexistent.sock", "ls"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let o = run(d, local, &["--server", "local,b", "whoami"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// Lines a child writes on a pipe, read on a thread.
fn lines(r: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines() {
            let Ok(l) = l else { return };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

fn expect_line(rx: &std::sync::mpsc::Receiver<String>, what: &str, seen: &mut Vec<String>) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push(l.clone());
                if l.contains(what) {
                    return;
                }
            }
            Err(_) => panic!("no line with {what:?}; saw {seen:#?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_says_unreachable_then_back_and_shows_every_event_once() {
    let mut a = AgentProcess::named("lab-w", 2).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let sock: PathBuf = a.socket();
    let book = |title: &str, slot: u32| {
        ok(run(
            &d,
            Some(&sock),
            &[
                "book",
                "--gpu",
                "0",
                "--start",
                &format!("+{}h", 2 + slot),
                "--for",
                "1h",
                "--title",
                title,
            ],
        ));
    };
    book("before", 0);
    let mut watch = gpubook(&d, Some(&sock))
        .args(["--json", "watch", "--after", "0", "--count", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(watch.stdout.take().unwrap());
    let err = lines(watch.stderr.take().unwrap());
    let (mut seen_out, mut seen_err) = (Vec::new(), Vec::new());
    expect_line(&out, "\"before\"", &mut seen_out);
    book("during", 1);
    expect_line(&out, "\"during\"", &mut seen_out);

    a.kill();
    expect_line(&err, "\"unreachable\"", &mut seen_err);
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.restart().await;
    expect_line(&err, "\"back\"", &mut seen_err);
    book("after-1", 2);
    book("after-2", 3);
    let status = watch.wait().unwrap();
    assert!(status.success(), "{status:?}\n{seen_err:#?}");
    let rest: Vec<String> = out.try_iter().collect();
    seen_out.extend(rest);
    let seqs: Vec<u64> = seen_out
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4], "{seen_out:#?}");
}
