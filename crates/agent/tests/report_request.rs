//! The `Report` request against the real agent binary over its socket: bookings written into
//! its store before it starts are reported as the test adds them up itself, and windows it
//! must not cover are refused with a typed error that says why.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::AgentProcess;
use gpubook_agent::store::Store;
use gpubook_core::{Booking, BookingId, BookingState, Change, ChangeKind, Interval, Usage};
use gpubook_proto::{ErrorKind, ReportRequest, Request, Response};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// (owner, GPU, start, hours, used hours): ended bookings, one after another on each GPU.
const SLOTS: [(&str, u32, &str, i64, i64); 5] = [
    ("ann", 0, "2026-06-01T08:00:00Z", 4, 3),
    ("ann", 1, "2026-06-02T22:00:00Z", 6, 0),
    ("ben", 0, "2026-06-03T10:00:00Z", 2, 2),
    ("ben", 1, "2026-05-31T20:00:00Z", 8, 8),
    ("ben", 0, "2026-06-20T10:00:00Z", 2, 2),
];

fn seed(state_dir: &std::path::Path) {
    std::fs::create_dir_all(state_dir).unwrap();
    let mut store = Store::open(&state_dir.join("agent.db")).unwrap();
    let changes: Vec<Change> = (1..)
        .zip(SLOTS)
        .map(|(id, (owner, gpu, start, hours, used))| {
            let interval = Interval::new(t(start), t(start) + Duration::hours(hours)).unwrap();
            Change {
                kind: ChangeKind::UsageRecorded,
                booking: Booking {
                    id: BookingId(id),
                    owner: owner.into(),
                    gpus: vec![common::sim_uuid(gpu)],
                    interval,
                    title: String::new(),
                    state: BookingState::Ended,
                    job: None,
                    asap: None,
                    pending_reason: None,
                    pending_since: None,
                    created_at: interval.start - Duration::days(1),
                    revision: 3,
                    warned_start: true,
                    warned_end: true,
                    run: None,
                    usage: Some(Usage {
                        mean_util: 10.0,
                        peak_memory: 0,
                        gpu_seconds_used: used * 3600,
                        gpu_seconds_booked: hours * 3600,
                        samples: 100,
                    }),
                },
                before: None,
                note: None,
            }
        })
        .collect();
    let mut tx = store.begin().unwrap();
    tx.record(&changes, None, t("2026-06-21T00:00:00Z"))
        .unwrap();
    tx.commit().unwrap();
}

#[tokio::test]
async fn reports_add_up_and_bad_windows_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    seed(&dir.path().join("state"));
    let agent = AgentProcess::start_in(dir, 2).await;
    let conn = agent.connect().await;
    let (from, to) = (t("2026-06-01T00:00:00Z"), t("2026-06-08T00:00:00Z"));

    let resp = conn
        .request(Request::Report(ReportRequest { from, to }))
        .await;
    let Ok(Response::Report(r)) = resp else {
        panic!("{resp:?}")
    };
    // The test's caller is root: an admin, who sees everyone.
    assert!(r.everyone);
    // Each slot clipped to the week, its use in proportion to the part inside.
    let mut want: std::collections::BTreeMap<&str, (i64, i64)> = Default::default();
    for (owner, _, start, hours, used) in SLOTS {
        let (s, e) = (t(start), t(start) + Duration::hours(hours));
        let inside = (e.min(to) - s.max(from)).num_seconds().max(0);
        if inside > 0 {
            let w = want.entry(owner).or_default();
            w.0 += inside;
            w.1 += used * inside / hours;
        }
    }
    let got: std::collections::BTreeMap<&str, (i64, i64)> = r
        .report
        .users
        .iter()
        .map(|l| (l.user.as_str(), (l.booked_gpu_secs, l.used_gpu_secs)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(want["ann"], (10 * 3600, 3 * 3600));
    let ann = &r.report.users[0];
    assert_eq!((ann.never_used, ann.bookings), (1, 2));
    let per_gpu: i64 = r.report.gpus.iter().map(|g| g.booked_secs).sum();
    assert_eq!(per_gpu, want.values().map(|w| w.0).sum::<i64>());

    for (from, to, says) in [
        (from, from, "must be after"),
        (to, from, "must be after"),
        (from, from + Duration::days(367), "at most 366 days"),
    ] {
        let e = conn
            .request(Request::Report(ReportRequest { from, to }))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
}
