//! `gpubook usage` shows bookings whose GPUs hold memory while doing nothing (the agent's
//! `idle_held` events), against a real agent run by root with simulated GPUs whose processes
//! file names a process holding 8 GiB at 0 %: the owner sees the stretch in words, an admin
//! sees it in `--json` too, and `--mine` keeps it to its owner.
//!
//! Needs root (to create users and run as them); CI sets GPUBOOK_REQUIRE_ROOT_TESTS=1.

mod support;

use gpubook_testkit::require_root;
use std::process::Output;
use std::time::{Duration, Instant};
use support::{ensure_user, text, Lab};

const HOLDER: &str = "gpb-holder";
const WATCHER: &str = "gpb-held-admin";
const BYSTANDER: &str = "gpb-held-other";

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// The entry for booking `id` in `usage --json`, if listed.
fn entry(o: &Output, id: u64) -> Option<serde_json::Value> {
    json(o)
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .cloned()
}

#[test]
fn usage_shows_bookings_that_hold_memory_and_do_nothing() {
    if !require_root("usage_shows_bookings_that_hold_memory_and_do_nothing") {
        return;
    }
    let holder = ensure_user(HOLDER, &[]);
    let admin = ensure_user(WATCHER, &[]);
    let other = ensure_user(BYSTANDER, &[]);
    let lab = Lab::start(
        &format!("granularity = \"1s\"\nidle_held_after = \"1s\"\nadmins = [\"{WATCHER}\"]\n"),
        "sim:2",
    );
    let o = lab.gpubook(
        Some(holder),
        &[
            "--json", "book", "--gpu", "0", "--asap", "--for", "1h", "--title", "notebook",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = json(&o)["booking"]["id"].as_u64().unwrap();
    // A process of the holder's on GPU 0: 8 GiB, no load.
    let state = lab.socket.parent().unwrap().parent().unwrap().join("state");
    let tmp = state.join("sim-processes.json.tmp");
    std::fs::write(
        &tmp,
        format!(r#"[{{"gpu": 0, "pid": 4242, "user": "{HOLDER}", "used_bytes": 8589934592}}]"#),
    )
    .unwrap();
    std::fs::rename(&tmp, state.join("sim-processes.json")).unwrap();

    // Still on, with no usage recorded yet: it shows once the agent has announced it.
    let until = Instant::now() + Duration::from_secs(30);
    let held = loop {
        let o = lab.gpubook(Some(holder), &["--json", "usage"]);
        assert!(o.status.success(), "{}", text(&o));
        if let Some(b) = entry(&o, id) {
            break b;
        }
        assert!(Instant::now() < until, "never shown: {}", text(&o));
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(held["state"], "active", "{held:#}");
    let stretch = &held["idle_held"][0];
    assert_eq!(stretch["note"]["kind"], "idle_held", "{held:#}");
    assert_eq!(stretch["note"]["memory_bytes"], 8u64 << 30, "{held:#}");

    let o = lab.gpubook(Some(holder), &["usage"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Idle but held"), "{}", text(&o));
    assert!(
        out.lines()
            .any(|l| l.contains(&format!("{id}  {HOLDER}  GPU 0 holds 8.0 GiB at 0 % for"))),
        "{}",
        text(&o)
    );

    // An admin sees it; `--mine` keeps it to its owner.
    let o = lab.gpubook(Some(admin), &["--json", "usage"]);
    assert!(entry(&o, id).is_some(), "{}", text(&o));
    let o = lab.gpubook(Some(other), &["--json", "usage", "--mine"]);
    assert!(entry(&o, id).is_none(), "{}", text(&o));
    let o = lab.gpubook(Some(holder), &["--json", "usage", "--mine"]);
    assert!(entry(&o, id).is_some(), "{}", text(&o));
}
