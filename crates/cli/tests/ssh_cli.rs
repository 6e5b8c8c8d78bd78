//! `gpubook --server ALIAS ...` against a real sshd (the client crate's fixture): an unknown
//! host key is reported with its fingerprint (exit 8) and trusted with
//! `--accept-new-host-key`; the agent is put on the server and answers; a name from the
//! server list works; a refused login exits 7, a closed port 5; `watch` over SSH says
//! "unreachable" then "back" when the SSH connection is cut and when sshd itself is stopped
//! and restarted, and shows every event once, in order, bookings made during the outage
//! included.

use gpubook_testkit::sshd;

use sshd::{agent_binary, runnable_copy, ClientHome, SshAgent, Sshd, User};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The CLI as the person whose SSH setup is `home` (keys in `agent`).
fn gpubook(home: &ClientHome, agent: &SshAgent, bin: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gpubook"));
    c.args(args)
        .env("HOME", home.home())
        .env("GPUBOOK_SSH_CONFIG", home.ssh("config"))
        .env("SSH_AUTH_SOCK", &agent.socket)
        .env("GPUBOOK_AGENT_BINARY", bin)
        .env("GPUBOOK_REMOTE_GPUS", "sim:2")
        .env("GPUBOOK_SERVERS", home.home().join("servers.toml"))
        .env_remove("GPUBOOK_SERVER")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("TZ", "UTC")
        .stdin(Stdio::null());
    c
}

/// Runs `cmd` (the CLI with its environment) with `args` on a new pseudo-terminal (util-linux
/// `script`), typing `input`; what the terminal showed comes back as stdout.
fn on_a_terminal(cmd: Command, args: &str, input: &str) -> Output {
    let mut c = Command::new("script");
    c.args(["-q", "-e", "-c"])
        .arg(format!("{} {args}", cmd.get_program().to_string_lossy()))
        .arg("/dev/null")
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in cmd.get_envs() {
        if v.is_none() {
            c.env_remove(k);
        }
    }
    let mut child = c.spawn().expect("run script(1)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn gpubook_over_ssh_with_an_alias() {
    if !sshd::available("gpubook_over_ssh_with_an_alias") {
        return;
    }
    let mut sshd = Sshd::start("");
    let user = User::fresh("gpb-ssh-cli");
    let home = ClientHome::new();
    user.authorize(&home.key.with_extension("pub"));
    home.host("lab1", &sshd, &user.name, "");
    // A user this key does not log in as.
    let other = User::ensure("gpb-ssh-cli-other");
    home.host("nokey", &sshd, &other.name, "");
    home.config(&format!(
        "Host closed\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  ConnectTimeout 5\n",
        sshd::free_port(),
        user.name
    ));
    let agent = SshAgent::start();
    agent.add(&home.key);
    let bin = runnable_copy(&agent_binary(), home.home());
    let run = |args: &[&str]| gpubook(&home, &agent, &bin, args).output().unwrap();

    // Unknown host key, nobody to ask: refused with its fingerprint, exit 8.
    let o = run(&["--server", "lab1", "gpus"]);
    assert_eq!(o.status.code(), Some(8), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&sshd.fingerprint()), "{}", text(&o));
    assert!(err.contains("--accept-new-host-key"), "{}", text(&o));

    // On a terminal the question is asked, with the key's type and fingerprint: "n" refuses,
    // "y" trusts it and appends it to known_hosts.
    let o = on_a_terminal(
        gpubook(&home, &agent, &bin, &[]),
        "--server lab1 gpus",
        "n\n",
    );
    assert_eq!(o.status.code(), Some(8), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains("[y/N]") && shown.contains(&sshd.fingerprint()),
        "{}",
        text(&o)
    );
    assert!(shown.contains("ssh-ed25519"), "{}", text(&o));
    let o = on_a_terminal(
        gpubook(&home, &agent, &bin, &[]),
        "--server lab1 gpus",
        "y\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("SIMULATED"),
        "{}",
        text(&o)
    );
    std::fs::remove_file(home.ssh("known_hosts")).unwrap();

    // --accept-new-host-key: the agent is put there and answers; the key is remembered.
    let o = run(&["--accept-new-host-key", "--server", "lab1", "gpus"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("SIMULATED"),
        "{}",
        text(&o)
    );
    assert!(sshd::read(&home.ssh("known_hosts")).contains(&format!("[127.0.0.1]:{}", sshd.port)));
    let o = run(&["--server", "lab1", "whoami"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with(&format!("{} ", user.name)),
        "{}",
        text(&o)
    );

    // A name from the list, and `any` with "local" down: the SSH server still answers.
    let o = run(&["servers", "add", "lab", "lab1"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&[
        "--server", "lab", "book", "--count", "1", "--for", "1h", "--asap",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = gpubook(&home, &agent, &bin, &["ls", "--all"])
        .env("GPUBOOK_SOCKET", home.home().join("no-local.sock"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().any(|l| l.starts_with("lab ")), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("local:"));

    // Refused login: 7. Nothing listening: 5.
    let o = run(&["--server", "nokey", "gpus"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    let o = run(&["--server", "closed", "gpus"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));

    watch_comes_back(&home, &agent, &bin, &user, &mut sshd);
    user.kill_all();
}

/// The CLI as `user` on the server itself, talking to their personal agent's socket directly
/// (no SSH): how bookings are made while sshd is down.
fn gpubook_on_the_server(user: &User) -> Command {
    let state = user.home.join(".local/state/gpubook");
    let pid = sshd::read(&state.join("personal-agent.pid"));
    let pid = pid.split_whitespace().next().expect("the agent's pid");
    // Its socket, from its command line (`serve ... --socket PATH`).
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the agent runs");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let socket = args
        .iter()
        .position(|a| a == "--socket")
        .and_then(|i| args.get(i + 1))
        .expect("the agent's --socket")
        .clone();
    let mut c = Command::new(env!("CARGO_BIN_EXE_gpubook"));
    std::os::unix::process::CommandExt::uid(&mut c, user.uid);
    std::os::unix::process::CommandExt::gid(&mut c, user.gid);
    c.env_clear()
        .env("HOME", &user.home)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("GPUBOOK_SOCKET", socket)
        .env("GPUBOOK_SERVERS", user.home.join("no-servers.toml"))
        .env("TZ", "UTC")
        .current_dir("/")
        .stdin(Stdio::null());
    c
}

/// `gpubook --server lab1 watch`: first the SSH connection is cut (the user's sshd session
/// processes killed), then sshd itself is stopped, bookings are made on the agent while it is
/// down (as the same user, through the agent's socket on the server), and sshd is started
/// again. Each time the watch says "unreachable", reconnects, says "back"; it shows every
/// event exactly once, in order, those made during the outage included.
fn watch_comes_back(home: &ClientHome, agent: &SshAgent, bin: &Path, user: &User, sshd: &mut Sshd) {
    let booking = |title: &str, hours: u32| -> Vec<String> {
        [
            "book",
            "--gpu",
            "1",
            "--start",
            &format!("+{}h", 3 + hours),
            "--for",
            "1h",
            "--title",
            title,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let book = |title: &str, hours: u32| {
        let mut args = vec!["--server".to_string(), "lab1".to_string()];
        args.extend(booking(title, hours));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = gpubook(home, agent, bin, &args).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    };
    let book_on_the_server = |title: &str, hours: u32| {
        let o = gpubook_on_the_server(user)
            .args(booking(title, hours))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    };
    let mut w = gpubook(
        home,
        agent,
        bin,
        &["--json", "--server", "lab1", "watch", "--count", "5"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let (out_tx, out) = std::sync::mpsc::channel();
    let stdout = w.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(l);
        }
    });
    let (err_tx, err) = std::sync::mpsc::channel();
    let stderr = w.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(l);
        }
    });
    let until = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    let mut wait_for = |what: &str| loop {
        let left = until.saturating_duration_since(Instant::now());
        match err.recv_timeout(left) {
            Ok(l) => {
                seen.push(l.clone());
                if l.contains(what) {
                    return;
                }
            }
            Err(_) => panic!("no {what:?} on stderr; saw {seen:#?}"),
        }
    };
    // Give the watch time to subscribe, then one event.
    std::thread::sleep(Duration::from_secs(2));
    book("w1", 0);
    let first = out.recv_timeout(Duration::from_secs(20)).expect("an event");
    assert!(first.contains("\"w1\""), "{first}");

    // Cut the SSH connection: sshd's per-connection processes for this user go away (the
    // agent, started detached by an earlier connection, keeps running).
    let sessions = Command::new("pgrep")
        .args(["-f", &format!("sshd.*{}", user.name)])
        .output()
        .unwrap();
    let pids: Vec<String> = String::from_utf8_lossy(&sessions.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(
        !pids.is_empty(),
        "no sshd session of {}: {}",
        user.name,
        sshd.log()
    );
    for p in &pids {
        let _ = Command::new("kill").args(["-KILL", p]).status();
    }
    wait_for("\"unreachable\"");
    wait_for("\"back\"");
    book("w2", 1);

    // sshd itself goes away (and every session it served); while it is down two bookings
    // are made on the agent directly; then it comes back on the same port and host key.
    sshd.stop();
    wait_for("\"unreachable\"");
    book_on_the_server("during 1", 2);
    book_on_the_server("during 2", 3);
    sshd.restart();
    wait_for("\"back\"");
    book("w3", 4);

    let status = w.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut events = vec![first];
    events.extend(out.try_iter());
    let titles: Vec<&str> = ["w1", "w2", "during 1", "during 2", "w3"].to_vec();
    assert_eq!(events.len(), titles.len(), "{events:#?}");
    for (e, t) in events.iter().zip(&titles) {
        assert!(e.contains(&format!("\"{t}\"")), "{t} expected: {events:#?}");
    }
}
