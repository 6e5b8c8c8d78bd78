//! `gpubook shell N` over SSH, against the test sshd as a real user (the agent put on the
//! server as that user): the shell on the server sees exactly the booked GPUs and runs as the
//! person who logged in; a booking that has not started is refused. (Another person's booking
//! is refused by the agent itself, shown with a shared agent in `shell_env_cli.rs`: over SSH
//! each person here reaches their own.)

mod support;

use gpubook_testkit::sshd;

use sshd::{agent_binary, runnable_copy, ClientHome, Sshd, User};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::text;

#[test]
fn a_shell_on_the_server_sees_exactly_the_booked_gpus() {
    if !sshd::available("a_shell_on_the_server_sees_exactly_the_booked_gpus") {
        return;
    }
    let sshd = Sshd::start("");
    let user = User::fresh("gpb-ssh-shell");
    let home = ClientHome::new();
    user.authorize(&home.key.with_extension("pub"));
    home.host("lab1", &sshd, &user.name, "");
    let agent = sshd::SshAgent::start();
    agent.add(&home.key);
    let bin = runnable_copy(&agent_binary(), home.home());
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gpubook"))
            .args(["--server", "lab1"])
            .args(args)
            .env("HOME", home.home())
            .env("GPUBOOK_SSH_CONFIG", home.ssh("config"))
            .env("SSH_AUTH_SOCK", &agent.socket)
            .env("GPUBOOK_AGENT_BINARY", &bin)
            .env("GPUBOOK_REMOTE_GPUS", "sim:3")
            .env("GPUBOOK_SERVERS", home.home().join("servers.toml"))
            .env_remove("GPUBOOK_SERVER")
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = run(&["--accept-new-host-key", "whoami"]);
    assert!(o.status.success(), "{}", text(&o));

    let o = run(&["--json", "book", "--gpu", "0,2", "--asap", "--for", "1h"]);
    assert!(o.status.success(), "{}", text(&o));
    let b: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = b["booking"]["id"].to_string();
    let gpus: Vec<&str> = b["booking"]["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert_eq!(gpus.len(), 2, "{b:#}");

    // The slot starts at once (or at the grid's next point): the shell works once it has.
    let until = Instant::now() + Duration::from_secs(60);
    let o = loop {
        let o = run(&["shell", &id, "--", "printenv CUDA_VISIBLE_DEVICES; id -un"]);
        if o.status.code() != Some(3) || Instant::now() > until {
            break o;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}\n{}\n", gpus.join(","), user.name),
        "{}",
        text(&o)
    );
    // The remote command's status comes back.
    let o = run(&["shell", &id, "--", "exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    // `env` over SSH: the same variables as export lines.
    let o = run(&["env", &id]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains(&format!("export CUDA_VISIBLE_DEVICES='{}'", gpus.join(","))),
        "{}",
        text(&o)
    );

    // Not started yet: refused before any shell opens.
    let o = run(&[
        "--json", "book", "--gpu", "1", "--start", "+3h", "--for", "1h",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let later: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let later = later["booking"]["id"].to_string();
    let o = run(&["shell", &later, "--", "echo opened"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has not started yet"),
        "{}",
        text(&o)
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("opened"));
    user.kill_all();
}
