//! `gpubook notify` as real Unix users against an agent run by root: set, show, add, clear;
//! another person's webhook URL is not in what anyone else's `notify show` prints; e-mail
//! is refused, saying why, on a server whose admin set up no `[mail]`; a typo is a usage
//! error before anything is sent. (Delivery itself: crates/agent/tests/notify_delivery.rs.)

mod support;

use gpubook_testkit::require_root;
use support::{ensure_user, text, Lab};

const ALICE: &str = "gpb-nalice";
const BOB: &str = "gpb-nbob";

#[test]
fn notify_set_show_add_and_clear_are_each_persons_own() {
    if !require_root("notify_set_show_add_and_clear_are_each_persons_own") {
        return;
    }
    let alice = ensure_user(ALICE, &[]);
    let bob = ensure_user(BOB, &[]);
    let lab = Lab::start("granularity = \"1m\"\n", "sim:2");
    let url = "https://chat.example.invalid/hooks/alice-secret-42";

    let o = lab.gpubook(
        Some(alice),
        &[
            "notify",
            "set",
            "--webhook",
            url,
            "--kinds",
            "job_finished,intruder",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(url) && out.contains("job_finished, intruder"),
        "{out}"
    );
    assert!(out.contains("does not send mail"), "{out}");

    // --add keeps the first; --json is the wire answer.
    let o = lab.gpubook(
        Some(alice),
        &[
            "--json",
            "notify",
            "set",
            "--add",
            "--webhook",
            "http://127.0.0.1:9/other",
            "--webhook-format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let targets = v["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{v}");
    assert_eq!(targets[0]["url"], url);
    assert_eq!(targets[1]["format"], "json");
    assert!(
        targets[1]["kinds"].as_array().unwrap().len() > 3,
        "defaults: {v}"
    );

    // Bob and root see their own (none), never Alice's.
    for who in [Some(bob), None] {
        let o = lab.gpubook(who, &["notify", "show"]);
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("No e-mail or webhook"), "{out}");
        assert!(!out.contains("alice-secret-42"), "{out}");
    }

    // No [mail] here: e-mail is refused, saying why (exit 5: unavailable).
    let o = lab.gpubook(Some(alice), &["notify", "set", "--email", "alice@lab.test"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("[mail]"),
        "{}",
        text(&o)
    );

    // Typos are usage errors, and nothing changed.
    for args in [
        &["notify", "set", "--webhook", url, "--kinds", "job_finishd"][..],
        &["notify", "set", "--webhook", "ftp://x/y"][..],
        &["notify", "set", "--email", "not-an-address"][..],
        &["notify", "set"][..],
    ] {
        let o = lab.gpubook(Some(alice), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    let o = lab.gpubook(Some(alice), &["--json", "notify", "show"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["targets"].as_array().unwrap().len(), 2, "{v}");

    let o = lab.gpubook(Some(alice), &["notify", "clear"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("No e-mail or webhook"));
}
