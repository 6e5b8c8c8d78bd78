//! `gpubook usage N --series`: a booking's GPU utilisation and memory over its slot, against a
//! real agent run by root with simulated GPUs whose processes file puts the owner's work on
//! GPU 0. The owner and an admin see it (in words and in `--json`); another user is refused
//! with `not_allowed`, and nothing of the series reaches them.
//!
//! Needs root (to create users and run as them); CI sets GPUBOOK_REQUIRE_ROOT_TESTS=1.

mod support;

use gpubook_testkit::require_root;
use std::process::Output;
use std::time::{Duration, Instant};
use support::{ensure_user, text, Lab};

const OWNER: &str = "gpb-series-owner";
const ADMIN: &str = "gpb-series-admin";
const OTHER: &str = "gpb-series-other";

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

#[test]
fn a_booking_s_series_is_shown_to_its_owner_and_admins_only() {
    if !require_root("a_booking_s_series_is_shown_to_its_owner_and_admins_only") {
        return;
    }
    let owner = ensure_user(OWNER, &[]);
    let admin = ensure_user(ADMIN, &[]);
    let other = ensure_user(OTHER, &[]);
    let lab = Lab::start(
        &format!("granularity = \"1s\"\nadmins = [\"{ADMIN}\"]\n"),
        "sim:2",
    );
    let o = lab.gpubook(
        Some(owner),
        &[
            "--json", "book", "--gpu", "0", "--asap", "--for", "1h", "--title", "train",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = json(&o)["booking"]["id"].as_u64().unwrap().to_string();
    let state = lab.socket.parent().unwrap().parent().unwrap().join("state");
    let tmp = state.join("sim-processes.json.tmp");
    std::fs::write(
        &tmp,
        format!(
            r#"[{{"gpu": 0, "pid": 4242, "user": "{OWNER}", "used_bytes": 4294967296, "util": 70}}]"#
        ),
    )
    .unwrap();
    std::fs::rename(&tmp, state.join("sim-processes.json")).unwrap();

    // The owner sees the points fill while the slot runs.
    let until = Instant::now() + Duration::from_secs(30);
    let s = loop {
        let o = lab.gpubook(Some(owner), &["--json", "usage", &id, "--series"]);
        assert!(o.status.success(), "{}", text(&o));
        let s = json(&o);
        let busy = s["gpus"][0]["points"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["util_max"] == 70));
        if busy {
            break s;
        }
        assert!(Instant::now() < until, "never filled: {s:#}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(s["gpus"].as_array().unwrap().len(), 1, "{s:#}");
    assert_eq!(s["gpus"][0]["index"], 0, "{s:#}");
    assert_eq!(s["bucket_secs"], 60, "{s:#}");
    let p = s["gpus"][0]["points"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(p["memory_max"], 4u64 << 30, "{p:#}");

    let o = lab.gpubook(Some(owner), &["usage", &id, "--series"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("Booking {id} on ")), "{out}");
    assert!(out.contains("GPU 0  util "), "{out}");
    assert!(out.contains("peak 70 %"), "{out}");
    assert!(out.contains("peak 4.0 GiB of "), "{out}");

    // An admin sees it too.
    let o = lab.gpubook(Some(admin), &["--json", "usage", &id, "--series"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&o)["id"].to_string(), id);

    // Anyone else is refused, typed, and sees no figure.
    for args in [
        vec!["--json", "usage", &id, "--series"],
        vec!["usage", &id, "--series"],
    ] {
        let o = lab.gpubook(Some(other), &args);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        let all = text(&o);
        assert!(all.contains("only its owner and admins"), "{all}");
        assert!(!all.contains("util_max") && !all.contains("GiB"), "{all}");
        if args[0] == "--json" {
            assert!(all.contains("not_allowed"), "{all}");
        }
    }
    // --series names one booking.
    let o = lab.gpubook(Some(owner), &["usage", "--series"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
