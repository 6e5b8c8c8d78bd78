//! An admin's `approve` and `deny` against a real shared agent decide on the booking as the
//! admin saw it: a booking changed since (its revision raised) is refused with exit 9 and stays
//! pending; the right revision is taken; on a terminal the booking is shown and the admin
//! asked; `gpubook ls` shows each booking's revision.
//!
//! Needs root (a real user owns the booking; root is the admin); CI runs as root and sets
//! GPUBOOK_REQUIRE_ROOT_TESTS=1 so these cannot silently skip there.

mod support;

use gpubook_testkit::require_root;
use std::process::{Command, Output, Stdio};
use support::{ensure_user, text, Ids, Lab};

/// Bookings longer than 4 hours wait for an admin.
const APPROVAL_OVER_4H: &str = "max_booking = \"4h\"\nover_policy = \"approval\"\n";

/// Owns the bookings; root decides on them.
const ASKER: &str = "gpb-asker";

/// The exit status of a decision on a booking that changed since it was looked at.
const EXIT_CHANGED: i32 = 9;

fn json(bytes: &[u8], o: &Output) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// `user` books 8 hours on GPU `gpu` in two hours: it waits for approval. Returns its id and
/// revision.
fn book_pending(lab: &Lab, user: Ids, gpu: &str) -> (u64, u64) {
    let o = lab.gpubook(
        Some(user),
        &[
            "--json", "book", "--gpu", gpu, "--start", "+2h", "--for", "8h",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let b = &json(&o.stdout, &o)["booking"];
    assert_eq!(b["state"], "pending_approval", "{b:#}");
    (b["id"].as_u64().unwrap(), b["revision"].as_u64().unwrap())
}

/// Booking `id` as root lists it.
fn listed(lab: &Lab, id: u64) -> serde_json::Value {
    let o = lab.gpubook(None, &["--json", "ls", "--past"]);
    assert!(o.status.success(), "{}", text(&o));
    json(&o.stdout, &o)["bookings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("booking {id} is not listed: {}", text(&o)))
}

#[test]
fn a_decision_on_an_older_revision_is_refused_and_the_booking_stays_pending() {
    if !require_root("a_decision_on_an_older_revision_is_refused_and_the_booking_stays_pending") {
        return;
    }
    let asker = ensure_user(ASKER, &[]);
    let lab = Lab::start(APPROVAL_OVER_4H, "sim:2");
    let (id, seen) = book_pending(&lab, asker, "0");
    let ids = id.to_string();

    // The owner moves it while the admin looks at the old shape: still pending, a new revision.
    let o = lab.gpubook(
        Some(asker),
        &["--json", "move", &ids, "--start", "+3h", "--for", "8h"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let now = json(&o.stdout, &o)["booking"]["revision"].as_u64().unwrap();
    assert!(now > seen, "a move raises the revision ({seen} → {now})");
    let (seen, now) = (seen.to_string(), now.to_string());

    // Approving or denying what the admin saw is refused, saying what it is now.
    for verb in ["approve", "deny"] {
        let o = lab.gpubook(None, &[verb, &ids, "--rev", &seen]);
        assert_eq!(o.status.code(), Some(EXIT_CHANGED), "{verb}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("booking {id} changed since you looked")),
            "{verb}: {}",
            text(&o)
        );
        assert_eq!(listed(&lab, id)["state"], "pending_approval");
    }
    // For programs: the kind and the revision to look at.
    let o = lab.gpubook(None, &["--json", "approve", &ids, "--rev", &seen]);
    assert_eq!(o.status.code(), Some(EXIT_CHANGED), "{}", text(&o));
    let e = json(&o.stderr, &o);
    assert_eq!(e["error"]["kind"], "changed", "{e:#}");
    assert_eq!(e["error"]["revision"].to_string(), now, "{e:#}");
    assert_eq!(listed(&lab, id)["state"], "pending_approval");

    // The revision as it is now is taken.
    let o = lab.gpubook(None, &["--json", "approve", &ids, "--rev", &now]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&o.stdout, &o)["booking"]["state"], "confirmed");
    assert_eq!(listed(&lab, id)["state"], "confirmed");
}

#[test]
fn ls_shows_each_bookings_revision() {
    if !require_root("ls_shows_each_bookings_revision") {
        return;
    }
    let asker = ensure_user(ASKER, &[]);
    let lab = Lab::start(APPROVAL_OVER_4H, "sim:2");
    let (id, _) = book_pending(&lab, asker, "1");
    let ids = id.to_string();
    for end in ["+12h", "+13h"] {
        let o = lab.gpubook(Some(asker), &["extend", &ids, "--to", end]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let rev = listed(&lab, id)["revision"].as_u64().unwrap();
    assert!(rev >= 3, "two changes after booking: revision {rev}");

    let o = lab.gpubook(Some(asker), &["ls"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header[..3], ["ID", "REV", "STATE"], "{out}");
    let row = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|r| r[0] == ids)
        .unwrap_or_else(|| panic!("booking {id} is not in the table:\n{out}"));
    assert_eq!(row[1], rev.to_string(), "{out}");
    assert_eq!(row[2], "pending_approval", "{out}");
}

/// Runs `cmd` on a new pseudo-terminal (util-linux `script`), typing `input`; what the
/// terminal showed comes back as stdout.
fn on_a_terminal(cmd: &Command, input: &str) -> Output {
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = Command::new("script");
    c.args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("TZ", "UTC")
        .env_remove("GPUBOOK_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
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

#[test]
fn on_a_terminal_the_admin_sees_the_booking_and_is_asked_before_deciding() {
    if !require_root("on_a_terminal_the_admin_sees_the_booking_and_is_asked_before_deciding") {
        return;
    }
    let asker = ensure_user(ASKER, &[]);
    let lab = Lab::start(APPROVAL_OVER_4H, "sim:2");
    let (id, rev) = book_pending(&lab, asker, "0");
    let ids = id.to_string();

    // No: nothing is sent, it still waits.
    let o = on_a_terminal(&lab.command(None, &["approve", &ids]), "n\n");
    let shown = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    for what in [
        format!("Booking {id} on lab-test, revision {rev}:"),
        format!("owner   {ASKER}"),
        "pending_approval".to_string(),
        "4h".to_string(),
        format!("Approve booking {id} as shown? [y/N]"),
        "nothing was sent".to_string(),
    ] {
        assert!(shown.contains(&what), "{what:?} is not shown:\n{shown}");
    }
    assert_eq!(listed(&lab, id)["state"], "pending_approval");

    // Yes: approved, at the revision shown.
    let o = on_a_terminal(&lab.command(None, &["approve", &ids]), "y\n");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let b = listed(&lab, id);
    assert_eq!(b["state"], "confirmed", "{b:#}");

    // Without a terminal nobody is asked: the booking, unchanged since it became pending, is
    // decided at once.
    let (id, _) = book_pending(&lab, asker, "1");
    let o = lab.gpubook(None, &["deny", &id.to_string(), "--reason", "not now"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(listed(&lab, id)["state"], "denied");
}

#[test]
fn moving_a_booking_to_other_gpus_keeps_its_times_and_says_moved() {
    if !require_root("moving_a_booking_to_other_gpus_keeps_its_times_and_says_moved") {
        return;
    }
    let lab = Lab::start("", "sim:4");
    let o = lab.gpubook(
        None,
        &[
            "--json", "book", "--gpu", "0", "--start", "+2h", "--for", "1h",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let booked = json(&o.stdout, &o)["booking"].clone();
    let id = booked["id"].as_u64().unwrap().to_string();
    // Only new GPUs: no --start or --end needed, and the times stay.
    let o = lab.gpubook(None, &["move", &id, "--gpu", "2,3"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("Moved: "), "{}", text(&o));
    let o = lab.gpubook(None, &["--json", "ls"]);
    let listed = json(&o.stdout, &o);
    let b = &listed["bookings"][0];
    assert_eq!(b["interval"], booked["interval"], "{b:#}");
    assert_eq!(b["gpus"].as_array().map(|g| g.len()), Some(2), "{b:#}");
    // --start alone says what is missing.
    let o = lab.gpubook(None, &["move", &id, "--start", "+3h"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn a_denied_booking_s_job_reads_not_run_rather_than_waiting() {
    if !require_root("a_denied_booking_s_job_reads_not_run_rather_than_waiting") {
        return;
    }
    let asker = ensure_user(ASKER, &[]);
    let lab = Lab::start(APPROVAL_OVER_4H, "sim:2");
    let o = lab.gpubook(
        Some(asker),
        &[
            "--json", "book", "--gpu", "1", "--start", "+2h", "--for", "8h", "--", "true",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = json(&o.stdout, &o)["booking"]["id"]
        .as_u64()
        .unwrap()
        .to_string();
    let o = lab.gpubook(Some(asker), &["ls"]);
    let row = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id.as_str()))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row(&o).contains("waiting"), "{}", text(&o));
    let o = lab.gpubook(None, &["deny", &id]);
    assert!(o.status.success(), "{}", text(&o));
    let o = lab.gpubook(Some(asker), &["ls", "--past"]);
    let line = row(&o);
    assert!(
        line.contains("not run") && !line.contains("waiting"),
        "{line}\n{}",
        text(&o)
    );
}
