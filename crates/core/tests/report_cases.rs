//! The report's figures on small hand-made weeks, with the numbers worked out by hand.

use chrono::{DateTime, Duration, TimeZone, Utc};
use gpubook_core::report::{self, Fact, FactKind, ReportError, LATE_CANCEL_HOURS};
use gpubook_core::{Booking, BookingId, BookingState, Gpu, GpuUuid, Interval, Note, Usage};

fn t(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
}

fn gpu(i: u32) -> Gpu {
    Gpu {
        uuid: GpuUuid(format!("GPU-{i}")),
        index: i,
        name: format!("Simulated GPU {i}"),
        memory_total: 1 << 34,
        server: "lab".into(),
        simulated: true,
        node: None,
    }
}

fn booking(id: u64, owner: &str, gpus: &[u32], from: DateTime<Utc>, to: DateTime<Utc>) -> Booking {
    Booking {
        id: BookingId(id),
        owner: owner.into(),
        gpus: gpus.iter().map(|i| GpuUuid(format!("GPU-{i}"))).collect(),
        interval: Interval::new(from, to).unwrap(),
        title: String::new(),
        state: BookingState::Ended,
        job: None,
        asap: None,
        pending_reason: None,
        pending_since: None,
        created_at: from - Duration::days(3),
        revision: 1,
        warned_start: false,
        warned_end: false,
        run: None,
        usage: None,
    }
}

fn usage(used: i64, booked: i64) -> Option<Usage> {
    Some(Usage {
        mean_util: 50.0,
        peak_memory: 1 << 30,
        gpu_seconds_used: used,
        gpu_seconds_booked: booked,
        samples: 100,
    })
}

fn fact(id: u64, at: DateTime<Utc>, what: FactKind) -> Fact {
    Fact {
        booking: BookingId(id),
        at,
        what,
    }
}

/// The week of Monday 2 March 2026.
fn week() -> Interval {
    report::window(t(2, 0), t(9, 0)).unwrap()
}

#[test]
fn a_recorded_week_adds_up_per_user_and_per_gpu() {
    let gpus = [gpu(0), gpu(1), gpu(2)];
    // ada: 2 GPUs for 10 h, used 14 h of its 20 GPU-hours.
    let mut a1 = booking(1, "ada", &[0, 1], t(3, 8), t(3, 18));
    a1.usage = usage(14 * 3600, 20 * 3600);
    // ada: 1 GPU booked 8 h, released after 3 h; used 2 h; held idle for 1 h before.
    let mut a2 = booking(2, "ada", &[2], t(4, 9), t(4, 12));
    a2.usage = usage(2 * 3600, 3 * 3600);
    // bob: 1 GPU, straddles the window's start: 4 h before, 4 h inside; used 4 h of 8.
    let mut b1 = booking(3, "bob", &[0], t(1, 20), t(2, 4));
    b1.usage = usage(4 * 3600, 8 * 3600);
    // bob: never used (readings made, no process).
    let mut b2 = booking(4, "bob", &[1], t(5, 10), t(5, 12));
    b2.usage = usage(0, 2 * 3600);
    // bob: cancelled 2 h before its start (late) and one cancelled 3 days ahead (not late).
    let mut b3 = booking(5, "bob", &[1], t(6, 10), t(6, 12));
    b3.state = BookingState::Cancelled;
    let mut b4 = booking(6, "bob", &[1], t(7, 10), t(7, 12));
    b4.state = BookingState::Cancelled;
    // cyd: confirmed, not started (counts as booked, nothing used); a denied one (nothing).
    let mut c1 = booking(7, "cyd", &[2], t(8, 20), t(9, 2));
    c1.state = BookingState::Confirmed;
    let mut c2 = booking(8, "cyd", &[2], t(5, 0), t(5, 5));
    c2.state = BookingState::Denied;
    let bookings = [a1, a2, b1, b2, b3, b4, c1, c2];
    let facts = [
        fact(
            2,
            t(4, 12),
            FactKind::Released {
                before: Interval::new(t(4, 9), t(4, 17)).unwrap(),
            },
        ),
        fact(
            2,
            t(4, 12),
            FactKind::Note(Note::IdleHeld {
                gpu: GpuUuid("GPU-2".into()),
                memory_bytes: 1 << 30,
                util_pct: 0,
                held_secs: 3600,
                released: true,
            }),
        ),
        fact(5, t(6, 8), FactKind::Cancelled),
        fact(6, t(4, 10), FactKind::Cancelled),
        fact(
            1,
            t(3, 9),
            FactKind::Note(Note::Intruder {
                gpu: GpuUuid("GPU-0".into()),
                pid: 4242,
                user: Some("bob".into()),
                used_bytes: 1 << 28,
                stopped: false,
            }),
        ),
        // An intruder note outside the window does not count.
        fact(
            1,
            t(9, 1),
            FactKind::Note(Note::Intruder {
                gpu: GpuUuid("GPU-0".into()),
                pid: 4243,
                user: Some("bob".into()),
                used_bytes: 1 << 28,
                stopped: false,
            }),
        ),
    ];
    let r = report::compute(&bookings, &facts, &gpus, week(), None);
    assert_eq!(r.late_cancel_hours, LATE_CANCEL_HOURS);
    let names: Vec<&str> = r.users.iter().map(|l| l.user.as_str()).collect();
    assert_eq!(names, ["ada", "bob", "cyd"]);
    let (ada, bob, cyd) = (&r.users[0], &r.users[1], &r.users[2]);
    assert_eq!(ada.bookings, 2);
    assert_eq!(ada.booked_gpu_secs, (20 + 8) * 3600);
    assert_eq!(ada.used_gpu_secs, (14 + 2) * 3600);
    assert_eq!(ada.released_early_gpu_secs, 5 * 3600);
    assert_eq!(ada.idle_held_gpu_secs, 3600);
    assert_eq!(ada.intruder_events, 1);
    assert_eq!((ada.never_used, ada.cancelled_late), (0, 0));
    assert_eq!(bob.bookings, 2);
    assert_eq!(bob.booked_gpu_secs, (4 + 2) * 3600);
    // 4 h used over an 8 h slot, 4 h of it inside: 2 h.
    assert_eq!(bob.used_gpu_secs, 2 * 3600);
    assert_eq!((bob.never_used, bob.cancelled_late), (1, 1));
    assert_eq!((bob.intruder_events, bob.intrusions_caused), (0, 1));
    assert_eq!(cyd.bookings, 1);
    assert_eq!(cyd.booked_gpu_secs, 4 * 3600);
    assert_eq!(cyd.used_gpu_secs, 0);
    // GPU 0: ada 10 h + bob 4 h; used ada 7 h (half of 14) + bob 2 h.
    let g: Vec<(i64, i64, i64)> = r
        .gpus
        .iter()
        .map(|g| (g.booked_secs, g.used_secs, g.maintenance_secs))
        .collect();
    assert_eq!(
        g,
        [
            (14 * 3600, 9 * 3600, 0),
            (12 * 3600, 7 * 3600, 0),
            (12 * 3600, 2 * 3600, 0)
        ]
    );
    // Per GPU adds up to per user.
    let users_booked: i64 = r.users.iter().map(|l| l.booked_gpu_secs).sum();
    let gpus_booked: i64 = r.gpus.iter().map(|g| g.booked_secs).sum();
    // GPU 2 counts ada's slot as booked before release (8 h), like her line.
    assert_eq!(users_booked, gpus_booked);

    // A user sees their own line, and the GPUs as far as their bookings go.
    let mine = report::compute(&bookings, &facts, &gpus, week(), Some("bob"));
    assert_eq!(mine.users.len(), 1);
    assert_eq!(mine.users[0], *bob);
    let g: Vec<i64> = mine.gpus.iter().map(|g| g.booked_secs).collect();
    assert_eq!(g, [4 * 3600, 2 * 3600, 0]);
}

#[test]
fn odd_used_seconds_split_over_gpus_add_up() {
    let mut b = booking(1, "ada", &[0, 1, 2], t(3, 0), t(3, 1));
    b.usage = usage(1001, 3 * 3600);
    let gpus = [gpu(0), gpu(1), gpu(2)];
    let r = report::compute(&[b], &[], &gpus, week(), None);
    let used: Vec<i64> = r.gpus.iter().map(|g| g.used_secs).collect();
    assert_eq!(used, [334, 334, 333]);
    assert_eq!(r.users[0].used_gpu_secs, 1001);
}

#[test]
fn an_idle_held_stretch_is_clipped_and_counts_every_gpu() {
    // Held from Sunday 22:00 to Monday 02:00 on 2 GPUs: 2 h inside the week, × 2 GPUs.
    let b = booking(1, "ada", &[0, 1], t(1, 20), t(2, 4));
    let f = fact(
        1,
        t(2, 2),
        FactKind::Note(Note::IdleHeld {
            gpu: GpuUuid("GPU-0".into()),
            memory_bytes: 1,
            util_pct: 1,
            held_secs: 4 * 3600,
            released: false,
        }),
    );
    let r = report::compute(&[b], &[f], &[gpu(0), gpu(1)], week(), None);
    assert_eq!(r.users[0].idle_held_gpu_secs, 4 * 3600);
    assert_eq!(r.users[0].booked_gpu_secs, 8 * 3600);
}

#[test]
fn windows_must_be_non_empty_and_at_most_366_days() {
    assert!(matches!(
        report::window(t(3, 0), t(3, 0)),
        Err(ReportError::Empty { .. })
    ));
    let e = report::window(t(1, 0), t(1, 0) + Duration::days(367)).unwrap_err();
    assert_eq!(e, ReportError::TooLong { days: 367 });
    assert!(e.to_string().contains("at most 366 days"), "{e}");
    assert!(report::window(t(1, 0), t(1, 0) + Duration::days(366)).is_ok());
}
