//! `gpubook report` against a real agent run by root, asked by real Unix users: a recorded week
//! (bookings, releases, cancellations, the watch's notes and usage, written through the agent's
//! own store as the agent writes them) must add up to the sums this test works out itself,
//! minute by minute, from what it recorded. A user gets their own line; an admin everyone's.

mod support;

use chrono::{DateTime, Duration, Utc};
use gpubook_agent::store::Store;
use gpubook_core::{
    Booking, BookingId, BookingState, Change, ChangeKind, GpuUuid, Interval, Note, Usage,
};
use gpubook_testkit::require_root;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use support::{ensure_user, text, Lab};

const ADMIN: &str = "gpb-radmin";
const ALICE: &str = "gpb-ralice";
const CAROL: &str = "gpb-rcarol";
const FROM: &str = "2026-11-02T00:00:00Z";
const TO: &str = "2026-11-09T00:00:00Z";

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn uuid(i: u32) -> GpuUuid {
    GpuUuid(format!("SIM-lab-test-{i}"))
}

/// One recorded booking: its final form, and what happened to it.
struct Recorded {
    booking: Booking,
    /// The slot before a release, and when it was released.
    released: Option<(Interval, DateTime<Utc>)>,
    cancelled_at: Option<DateTime<Utc>>,
    notes: Vec<(DateTime<Utc>, Note)>,
}

/// "MM-DDTHH" of 2026, UTC.
fn hour(s: &str) -> DateTime<Utc> {
    t(&format!("2026-{s}:00:00Z"))
}

fn recorded(id: u64, owner: &str, gpus: &[u32], from: &str, to: &str) -> Recorded {
    let interval = Interval::new(hour(from), hour(to)).unwrap();
    Recorded {
        booking: Booking {
            id: BookingId(id),
            owner: owner.into(),
            gpus: gpus.iter().map(|&i| uuid(i)).collect(),
            interval,
            title: format!("run {id}"),
            state: BookingState::Ended,
            job: None,
            asap: None,
            pending_reason: None,
            pending_since: None,
            created_at: interval.start - Duration::days(4),
            revision: 2,
            warned_start: true,
            warned_end: true,
            run: None,
            usage: None,
        },
        released: None,
        cancelled_at: None,
        notes: Vec::new(),
    }
}

fn used(hours: i64, of: i64) -> Option<Usage> {
    Some(Usage {
        mean_util: 40.0,
        peak_memory: 1 << 30,
        gpu_seconds_used: hours * 3600,
        gpu_seconds_booked: of * 3600,
        samples: 600,
    })
}

/// A week of a small lab, plus a booking before it. Times are 2026's, "MM-DDTHH" in UTC.
fn week() -> Vec<Recorded> {
    let slots: [(&str, &[u32], &str, &str); 9] = [
        (ALICE, &[0, 1], "11-03T08", "11-03T18"),
        (ALICE, &[2], "11-04T09", "11-04T12"),
        (CAROL, &[0], "11-01T20", "11-02T04"),
        (CAROL, &[1], "11-05T10", "11-05T12"),
        (CAROL, &[1], "11-06T10", "11-06T12"),
        (CAROL, &[1], "11-07T10", "11-07T12"),
        (ADMIN, &[3], "11-08T20", "11-09T02"),
        (ALICE, &[3], "10-20T08", "10-20T10"),
        (CAROL, &[2], "11-05T00", "11-05T05"),
    ];
    let mut w: Vec<Recorded> = (1..)
        .zip(slots)
        .map(|(id, (owner, gpus, from, to))| recorded(id, owner, gpus, from, to))
        .collect();
    // Alice: 2 GPUs for 10 h, used 14 of 20 GPU-hours; Carol's process intruded.
    w[0].booking.usage = used(14, 20);
    w[0].notes.push((
        hour("11-03T09"),
        Note::Intruder {
            gpu: uuid(0),
            pid: 4242,
            user: Some(CAROL.into()),
            used_bytes: 1 << 28,
            stopped: false,
        },
    ));
    // Alice: booked 09-17, held idle for an hour and released by the policy at 12.
    w[1].booking.usage = used(2, 3);
    let before = Interval::new(hour("11-04T09"), hour("11-04T17")).unwrap();
    w[1].released = Some((before, hour("11-04T12")));
    w[1].notes.push((
        hour("11-04T12"),
        Note::IdleHeld {
            gpu: uuid(2),
            memory_bytes: 1 << 30,
            util_pct: 1,
            held_secs: 3600,
            released: true,
        },
    ));
    // Carol: one straddling the week's start, one never used, two cancelled (one late).
    w[2].booking.usage = used(4, 8);
    w[3].booking.usage = used(0, 2);
    for (i, at) in [(4, "11-06T08"), (5, "11-04T10")] {
        w[i].booking.state = BookingState::Cancelled;
        w[i].cancelled_at = Some(hour(at));
    }
    // The admin's straddles the week's end, with no usage recorded; Alice's old one is
    // outside the week; Carol's denied one books nothing.
    w[7].booking.usage = used(2, 2);
    w[8].booking.state = BookingState::Denied;
    w
}

/// Writes the week into the agent's store as the agent would have: each booking made, then
/// released, cancelled, denied or ended, the watch's notes, its usage.
fn seed(state_dir: &Path, week: &[Recorded]) {
    std::fs::create_dir_all(state_dir).unwrap();
    let mut store = Store::open(&state_dir.join("agent.db")).unwrap();
    for r in week {
        let b = &r.booking;
        let change = |kind, before, note| Change {
            kind,
            booking: b.clone(),
            before,
            note,
        };
        let mut made = b.clone();
        made.state = BookingState::Confirmed;
        made.interval = r.released.map_or(b.interval, |(before, _)| before);
        made.usage = None;
        let mut steps = vec![(
            b.created_at,
            Change {
                booking: made,
                ..change(ChangeKind::Created, None, None)
            },
        )];
        match b.state {
            BookingState::Cancelled => {
                let at = r.cancelled_at.unwrap();
                steps.push((at, change(ChangeKind::Cancelled, None, None)));
            }
            BookingState::Denied => {
                steps.push((b.created_at, change(ChangeKind::Denied, None, None)))
            }
            _ => {
                if let Some((before, at)) = r.released {
                    steps.push((at, change(ChangeKind::Released, Some(before), None)));
                }
                for (at, n) in &r.notes {
                    let kind = match n {
                        Note::IdleHeld { .. } => ChangeKind::IdleHeld,
                        _ => ChangeKind::Intruder,
                    };
                    steps.push((*at, change(kind, None, Some(n.clone()))));
                }
                steps.push((b.interval.end, change(ChangeKind::Ended, None, None)));
                steps.push((
                    b.interval.end,
                    change(ChangeKind::UsageRecorded, None, None),
                ));
            }
        }
        for (at, c) in steps {
            let mut tx = store.begin().unwrap();
            tx.record(&[c], Some(&b.owner), at).unwrap();
            tx.commit().unwrap();
        }
    }
}

/// What the report must say, worked out minute by minute from the recorded week.
#[derive(Debug, Default, PartialEq)]
struct Expect {
    bookings: u64,
    booked: i64,
    used: i64,
    idle_held: i64,
    released: i64,
    cancelled_late: u64,
    never_used: u64,
    intruder_events: u64,
    intrusions_caused: u64,
}

fn minutes(from: DateTime<Utc>, to: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> {
    let n = (to - from).num_minutes();
    (0..n.max(0)).map(move |m| from + Duration::minutes(m))
}

/// Per user and per GPU (booked, used) in GPU-seconds; `only` as a user who is not an admin.
fn expected(
    week: &[Recorded],
    only: Option<&str>,
) -> (BTreeMap<String, Expect>, BTreeMap<String, (i64, i64)>) {
    let (w0, w1) = (t(FROM), t(TO));
    let inside = |m: &DateTime<Utc>| *m >= w0 && *m < w1;
    let mut users: BTreeMap<String, Expect> = BTreeMap::new();
    let mut gpus: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in week {
        let b = &r.booking;
        let n = b.gpus.len() as i64;
        if let Some(at) = r.cancelled_at {
            let late = (b.interval.start - at).num_hours() < 24;
            if late && inside(&b.interval.start) {
                users.entry(b.owner.clone()).or_default().cancelled_late += 1;
            }
        }
        if b.state != BookingState::Ended {
            continue;
        }
        let reserved = r.released.map_or(b.interval, |(before, _)| before);
        let booked_min = minutes(reserved.start, reserved.end).filter(inside).count() as i64;
        if booked_min == 0 {
            continue;
        }
        let held_min = minutes(b.interval.start, b.interval.end)
            .filter(inside)
            .count() as i64;
        let slot_min = (b.interval.end - b.interval.start).num_minutes();
        let use_secs = b
            .usage
            .map_or(0, |u| u.gpu_seconds_used * held_min / slot_min);
        let e = users.entry(b.owner.clone()).or_default();
        e.bookings += 1;
        e.booked += booked_min * 60 * n;
        e.used += use_secs;
        e.released += (booked_min - held_min) * 60 * n;
        let no_process = b.usage.is_some_and(|u| u.gpu_seconds_used == 0);
        if no_process && inside(&b.interval.start) {
            e.never_used += 1;
        }
        for (at, note) in &r.notes {
            if let Note::IdleHeld { held_secs, .. } = note {
                let from = *at - Duration::seconds(*held_secs);
                e.idle_held += minutes(from, *at).filter(inside).count() as i64 * 60 * n;
            }
        }
        if only.is_some_and(|o| o != b.owner) {
            continue;
        }
        for g in &b.gpus {
            let x = gpus.entry(g.0.clone()).or_default();
            x.0 += booked_min * 60;
            x.1 += use_secs / n;
        }
    }
    for r in week {
        for (at, note) in &r.notes {
            if let Note::Intruder { user, .. } = note {
                if inside(at) {
                    users
                        .entry(r.booking.owner.clone())
                        .or_default()
                        .intruder_events += 1;
                    let who = user.clone().unwrap();
                    users.entry(who).or_default().intrusions_caused += 1;
                }
            }
        }
    }
    if let Some(o) = only {
        users.retain(|u, _| u == o);
    }
    (users, gpus)
}

/// What the report says, in the same shape.
fn said(v: &Value) -> (BTreeMap<String, Expect>, BTreeMap<String, (i64, i64)>) {
    let n = |l: &Value, k: &str| l[k].as_i64().unwrap_or_else(|| panic!("{k} in {l}"));
    let users = v["report"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let e = Expect {
                bookings: n(l, "bookings") as u64,
                booked: n(l, "booked_gpu_secs"),
                used: n(l, "used_gpu_secs"),
                idle_held: n(l, "idle_held_gpu_secs"),
                released: n(l, "released_early_gpu_secs"),
                cancelled_late: n(l, "cancelled_late") as u64,
                never_used: n(l, "never_used") as u64,
                intruder_events: n(l, "intruder_events") as u64,
                intrusions_caused: n(l, "intrusions_caused") as u64,
            };
            (l["user"].as_str().unwrap().to_string(), e)
        })
        .collect();
    let gpus = v["report"]["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| n(g, "booked_secs") > 0)
        .map(|g| {
            assert_eq!(n(g, "maintenance_secs"), 0);
            let uuid = g["uuid"].as_str().unwrap().to_string();
            (uuid, (n(g, "booked_secs"), n(g, "used_secs")))
        })
        .collect();
    (users, gpus)
}

fn json_report(lab: &Lab, who: support::Ids, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "report", "--from", FROM, "--to", TO];
    args.extend_from_slice(extra);
    let o = lab.gpubook(Some(who), &args);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

#[test]
fn a_recorded_week_adds_up_and_each_person_sees_their_share() {
    if !require_root("a_recorded_week_adds_up_and_each_person_sees_their_share") {
        return;
    }
    let admin = ensure_user(ADMIN, &[]);
    let alice = ensure_user(ALICE, &[]);
    let carol = ensure_user(CAROL, &[]);
    let week = week();
    let lab = Lab::start_seeded(&format!("admins = [\"{ADMIN}\"]\n"), "sim:4", |dir| {
        seed(dir, &week)
    });
    let o = lab.gpubook(None, &["--json", "gpus"]);
    let gpus: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(gpus["gpus"][3]["uuid"], uuid(3).0, "{}", text(&o));

    // An admin sees everyone, and every figure is what the week adds up to.
    let all = json_report(&lab, admin, &[]);
    assert_eq!(all["everyone"], true);
    let (users, per_gpu) = said(&all);
    let (want_users, want_gpus) = expected(&week, None);
    assert_eq!(users, want_users);
    assert_eq!(per_gpu, want_gpus);
    // A few by hand, so the test's own sums cannot be wrong in the same way.
    assert_eq!(users[ALICE].booked, 28 * 3600);
    assert_eq!(users[ALICE].released, 5 * 3600);
    assert_eq!(users[CAROL].used, 2 * 3600);
    assert_eq!(users[ADMIN].booked, 4 * 3600);
    assert_eq!(all["report"]["gpus"].as_array().unwrap().len(), 4);

    // Alice sees her own line, and the GPUs as far as her bookings go.
    let mine = json_report(&lab, alice, &[]);
    assert_eq!(mine["everyone"], false);
    let (users, per_gpu) = said(&mine);
    let (want_users, want_gpus) = expected(&week, Some(ALICE));
    assert_eq!(users.keys().collect::<Vec<_>>(), [ALICE]);
    assert_eq!((users, per_gpu), (want_users, want_gpus));
    // So does Carol, whose intrusion on Alice's booking is on her line, not Alice's name.
    let hers = json_report(&lab, carol, &["--by", "gpu"]);
    let (users, _) = said(&hers);
    assert_eq!(users.keys().collect::<Vec<_>>(), [CAROL]);
    assert_eq!(users[CAROL].intrusions_caused, 1);
    assert!(!String::from_utf8_lossy(
        &lab.gpubook(
            Some(carol),
            &["--json", "report", "--from", FROM, "--to", TO]
        )
        .stdout
    )
    .contains(ALICE));

    // The table and the CSV say the same in hours.
    let o = lab.gpubook(Some(admin), &["report", "--from", FROM, "--to", TO]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        table.contains("BOOKED GPU-h") && table.contains("IDLE-HELD GPU-h"),
        "{table}"
    );
    let alice_row = table.lines().find(|l| l.starts_with(ALICE)).unwrap();
    let cells: Vec<&str> = alice_row.split_whitespace().collect();
    assert_eq!(cells[1..4], ["2", "28.00", "16.00"], "{table}");
    let o = lab.gpubook(
        Some(admin),
        &["report", "--csv", "--by", "gpu", "--from", FROM, "--to", TO],
    );
    let csv = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "gpu,uuid,name,booked_hours,used_hours,maintenance_hours"
    );
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(
        lines[1].starts_with("0,SIM-lab-test-0,") && lines[1].ends_with(",14.0000,9.0000,0.0000"),
        "{csv}"
    );

    // More than a year is refused, with what to do.
    let o = lab.gpubook(
        Some(alice),
        &["report", "--from", "2025-01-01T00:00", "--to", TO],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("at most 366 days"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_booking_released_now_counts_as_booked_and_given_back() {
    if !require_root("a_booking_released_now_counts_as_booked_and_given_back") {
        return;
    }
    let alice = ensure_user(ALICE, &[]);
    let lab = Lab::start("", "sim:2");
    let o = lab.gpubook(
        Some(alice),
        &[
            "--json", "book", "--gpu", "1", "--start", "now", "--for", "1h",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let made: Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = made["booking"]["id"].to_string();
    let start: DateTime<Utc> = made["booking"]["interval"]["start"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: DateTime<Utc> = made["booking"]["interval"]["end"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The slot starts on the agent's timer; release it once it has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let released = loop {
        let o = lab.gpubook(Some(alice), &["--json", "release", &id]);
        if o.status.success() {
            break serde_json::from_slice::<Value>(&o.stdout).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "{}", text(&o));
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let held_end: DateTime<Utc> = released["booking"]["interval"]["end"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (from, to) = (
        (start - Duration::hours(1)).to_rfc3339(),
        (end + Duration::hours(1)).to_rfc3339(),
    );
    let o = lab.gpubook(
        Some(alice),
        &["--json", "report", "--from", &from, "--to", &to],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let line = &v["report"]["users"][0];
    assert_eq!(line["user"], ALICE, "{v}");
    assert_eq!(line["booked_gpu_secs"], (end - start).num_seconds(), "{v}");
    assert_eq!(
        line["released_early_gpu_secs"],
        (end - held_end).num_seconds(),
        "{v}"
    );
    assert_eq!(
        v["report"]["gpus"][1]["booked_secs"],
        (end - start).num_seconds(),
        "{v}"
    );
}
