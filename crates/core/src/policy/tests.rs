//! Tests of the policy file and its checks.

use super::*;

#[test]
fn reads_the_documented_file() {
    let p = Policy::from_toml(
        r#"
default_role = "user"
admins = ["alice", "group:gpu-admins"]
guests = ["group:students"]
granularity = "15m"
max_booking = "24h"
max_ahead = "14d"
weekly_quota_gpu_hours = 200
max_gpus_at_once = 4
over_policy = "approval"
intruders = "warn"
idle_after = "30m"
release_idle = false
"#,
    )
    .unwrap();
    assert_eq!(p.max_booking_secs, Some(86_400));
    assert_eq!(p.intruders, IntruderPolicy::Warn);
    assert_eq!(p.idle_after(), Some(Duration::minutes(30)));
    assert!(!p.release_idle);
    assert_eq!(p.role_of("alice", &[]), Role::Admin);
    assert_eq!(p.role_of("bob", &["gpu-admins".into()]), Role::Admin);
    assert_eq!(p.role_of("carol", &["students".into()]), Role::Guest);
    assert_eq!(p.role_of("dave", &[]), Role::User);
}

#[test]
fn bad_files_name_the_field() {
    let e = Policy::from_toml("max_booking = \"forever\"").unwrap_err();
    assert!(e.to_string().contains("max_booking"), "{e}");
    let e = Policy::from_toml("max_bookings = \"1h\"").unwrap_err();
    assert!(e.to_string().contains("max_bookings"), "{e}");
    let e = Policy::from_toml("granularity = \"7m\"").unwrap_err();
    assert!(e.to_string().contains("granularity"), "{e}");
    let e = Policy::from_toml("default_role = \"king\"").unwrap_err();
    assert!(e.to_string().contains("king"), "{e}");
    let e = Policy::from_toml("intruders = \"shoot\"").unwrap_err();
    assert!(e.to_string().contains("shoot"), "{e}");
    let e = Policy::from_toml("idle_after = \"0s\"").unwrap_err();
    assert!(e.to_string().contains("idle_after"), "{e}");
    let e = Policy::from_toml("release_idle = \"yes\"").unwrap_err();
    assert!(e.to_string().contains("release_idle"), "{e}");
}

#[test]
fn watching_the_gpus_is_off_unless_asked() {
    let p = Policy::from_toml("").unwrap();
    assert_eq!(p.intruders, IntruderPolicy::Warn);
    assert_eq!(p.idle_after(), None);
    assert!(!p.release_idle);
    let p = Policy::from_toml("intruders = \"stop\"\nidle_after = \"2s\"\nrelease_idle = true")
        .unwrap();
    assert_eq!(p.intruders, IntruderPolicy::Stop);
    assert_eq!(p.idle_after_secs, Some(2));
    assert!(p.release_idle);
}

#[test]
fn idle_but_held_is_on_by_default_and_can_be_turned_off() {
    let p = Policy::from_toml("").unwrap();
    assert_eq!(p.idle_held_after(), Some(Duration::minutes(30)));
    assert_eq!((p.idle_held_below_pct, p.release_idle_held), (5, false));
    let p = Policy::from_toml("idle_held_after = \"off\"").unwrap();
    assert_eq!(p.idle_held_after(), None);
    let p = Policy::from_toml(
        "idle_held_after = \"10m\"\nidle_held_below = 20\nrelease_idle_held = true",
    )
    .unwrap();
    assert_eq!(p.idle_held_after_secs, Some(600));
    assert_eq!((p.idle_held_below_pct, p.release_idle_held), (20, true));
    for (bad, field) in [
        ("idle_held_below = 0", "idle_held_below"),
        ("idle_held_below = 101", "idle_held_below"),
        ("idle_held_after = \"never\"", "idle_held_after"),
        ("idle_held_after = \"400d\"", "idle_held_after"),
    ] {
        let e = Policy::from_toml(bad).unwrap_err().to_string();
        assert!(e.contains(field), "{bad}: {e}");
    }
    // An agent from before these fields does not look: read as never.
    let mut v = serde_json::to_value(Policy::default()).unwrap();
    for field in [
        "idle_held_after_secs",
        "idle_held_below_pct",
        "release_idle_held",
    ] {
        v.as_object_mut().unwrap().remove(field);
    }
    let p: Policy = serde_json::from_value(v).unwrap();
    assert_eq!((p.idle_held_after(), p.idle_held_below_pct), (None, 5));
}

#[test]
fn a_policy_from_an_older_agent_reads_with_the_defaults() {
    // What an agent before the watch fields sent in a PolicyResponse.
    let mut v = serde_json::to_value(Policy::default()).unwrap();
    for field in [
        "intruders",
        "idle_after_secs",
        "release_idle",
        "end_warning_secs",
        "max_grace_secs",
        "max_log_bytes",
        "max_pending",
    ] {
        v.as_object_mut().unwrap().remove(field);
    }
    let p: Policy = serde_json::from_value(v).unwrap();
    assert_eq!(p, Policy::default());
}

#[test]
fn reads_the_bounds_on_jobs_and_waiting_requests() {
    let p = Policy::from_toml("").unwrap();
    assert_eq!(p.max_grace(), Duration::minutes(5));
    assert_eq!(p.max_log(), 1 << 30);
    assert_eq!(p.max_pending(), 20);
    let p = Policy::from_toml("max_grace = \"90s\"\nmax_log = \"512M\"\nmax_pending = 3").unwrap();
    assert_eq!(p.max_grace_secs, 90);
    assert_eq!(p.max_log_bytes, 512 << 20);
    assert_eq!(p.max_pending, 3);
    let p = Policy::from_toml("max_log = 1048576").unwrap();
    assert_eq!(p.max_log(), 1 << 20);
    let p = Policy::from_toml("max_log = \"2t\"").unwrap();
    assert_eq!(p.max_log(), 2 << 40);
}

#[test]
fn every_duration_and_size_is_bounded_and_named_when_out_of_range() {
    for (text, field) in [
        ("granularity = \"2d\"", "granularity"),
        ("max_booking = \"367d\"", "max_booking"),
        ("max_ahead = \"9999999w\"", "max_ahead"),
        ("idle_after = \"400d\"", "idle_after"),
        ("end_warning = \"53w\"", "end_warning"),
        ("end_warning = \"0s\"", "end_warning"),
        ("max_grace = \"25h\"", "max_grace"),
        ("max_grace = \"0s\"", "max_grace"),
        ("max_grace = \"soon\"", "max_grace"),
        ("max_log = \"1K\"", "max_log"),
        ("max_log = \"1P\"", "max_log"),
        ("max_log = \"99999999999T\"", "max_log"),
        ("max_log = -1", "max_log"),
        ("max_pending = -1", "max_pending"),
    ] {
        let e = Policy::from_toml(text).unwrap_err();
        assert!(e.to_string().contains(field), "{text}: {e}");
    }
    // The most each may be is accepted.
    let p = Policy::from_toml(
        "granularity = \"1d\"\nmax_booking = \"366d\"\nmax_ahead = \"366d\"\n\
         idle_after = \"366d\"\nend_warning = \"366d\"\nmax_grace = \"1d\"\nmax_log = \"64K\"",
    )
    .unwrap();
    assert_eq!(p.max_booking_secs, Some(366 * 86_400));
}

#[test]
fn a_policy_built_by_hand_is_checked_and_its_accessors_never_panic() {
    let p = Policy {
        granularity_secs: 0,
        max_ahead_secs: Some(i64::MAX),
        idle_after_secs: Some(i64::MIN),
        end_warning_secs: i64::MAX,
        max_grace_secs: i64::MAX,
        ..Policy::default()
    };
    assert!(p
        .validate()
        .unwrap_err()
        .to_string()
        .contains("granularity"));
    let p2 = Policy {
        granularity_secs: 900,
        ..p.clone()
    };
    let e = p2.validate().unwrap_err();
    assert!(e.to_string().contains("max_ahead"), "{e}");
    assert_eq!(p.granularity(), Duration::seconds(1));
    assert_eq!(p.end_warning(), Duration::days(MAX_POLICY_DAYS));
    assert_eq!(p.idle_after(), Some(Duration::seconds(1)));
    assert_eq!(p.max_grace(), Duration::days(1));
    assert!(Policy::default().validate().is_ok());
}

#[test]
fn scratch_and_stage_quota_are_read_with_defaults() {
    let p = Policy::from_toml("").unwrap();
    assert_eq!(p.scratch, "/scratch/gpubook");
    assert_eq!(p.stage_quota_bytes, 500 << 30);
    let p = Policy::from_toml("scratch = \"/local/ssd\"\nstage_quota = \"20G\"").unwrap();
    assert_eq!(
        (p.scratch.as_str(), p.stage_quota_bytes),
        ("/local/ssd", 20 << 30)
    );
    for (text, field) in [
        ("scratch = \"tmp\"", "scratch"),
        ("scratch = \"/a/../etc\"", "scratch"),
        ("stage_quota = \"lots\"", "stage_quota"),
    ] {
        let e = Policy::from_toml(text).unwrap_err().to_string();
        assert!(e.contains(field), "{text}: {e}");
    }
    // An older agent's policy (no such fields) reads with the defaults.
    let mut old = serde_json::to_value(Policy::default()).unwrap();
    old.as_object_mut().unwrap().remove("scratch");
    old.as_object_mut().unwrap().remove("stage_quota_bytes");
    let p: Policy = serde_json::from_value(old).unwrap();
    assert_eq!(p.scratch, "/scratch/gpubook");
}
