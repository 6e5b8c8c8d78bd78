//! What each event says to its owner, and when it says nothing.

use super::*;
use gpubook_core::{BookingState, GpuUuid, Interval, JobRun, JobState};

fn booking(owner: &str, start: DateTime<Utc>, hours: i64) -> Booking {
    Booking {
        id: BookingId(7),
        owner: owner.into(),
        gpus: vec![GpuUuid("a".into()), GpuUuid("b".into())],
        interval: Interval::new(start, start + Duration::hours(hours)).unwrap(),
        title: "train".into(),
        state: BookingState::Confirmed,
        job: None,
        asap: None,
        pending_reason: None,
        pending_since: None,
        created_at: start,
        revision: 1,
        warned_start: false,
        warned_end: false,
        run: None,
        usage: None,
    }
}

/// The default settings with notices of `kind` turned off.
fn without(kind: &str) -> Settings {
    let mut s = Settings::default();
    s.notify.insert(kind.into(), false);
    s
}

/// A job that ran 62 minutes up to `now` and exited with `code`.
fn finished_62_minutes(now: DateTime<Utc>, code: i32) -> JobRun {
    JobRun {
        state: JobState::Finished,
        pid: Some(1),
        start_ticks: None,
        started_at: Some(now - Duration::minutes(62)),
        ended_at: Some(now),
        exit_code: Some(code),
        signal: None,
        message: None,
        log: None,
        staged_bytes: None,
        devices: Vec::new(),
    }
}

fn event(kind: EventKind, b: Booking, at: DateTime<Utc>) -> Event {
    Event {
        seq: 1,
        at,
        kind,
        booking: b,
        before: None,
        actor: None,
        note: None,
    }
}

#[test]
fn own_slot_ending_offers_an_hour_more() {
    let now = Utc::now();
    let b = booking("ann", now - Duration::minutes(50), 1);
    let n = decide(
        &event(EventKind::SlotEnding, b.clone(), now),
        "lab",
        "Lab 1",
        "ann",
        now,
        &Settings::default(),
    )
    .unwrap();
    assert_eq!(n.kind, "slot_ending");
    assert!(n.summary.contains("ends in 10m"), "{}", n.summary);
    assert_eq!(
        n.extend,
        Some(ExtendOffer {
            server: "lab".into(),
            id: BookingId(7),
            to: b.interval.end + Duration::hours(1)
        })
    );
}

#[test]
fn memory_held_without_work_says_how_much_and_how_long() {
    let now = Utc::now();
    let b = booking("ann", now - Duration::hours(1), 2);
    let mut ev = event(EventKind::IdleHeld, b, now);
    ev.note = Some(Note::IdleHeld {
        gpu: GpuUuid("a".into()),
        memory_bytes: 8 << 30,
        util_pct: 1,
        held_secs: 1800,
        released: false,
    });
    let n = decide(&ev, "lab", "Lab 1", "ann", now, &Settings::default()).unwrap();
    assert_eq!(n.kind, "idle_held");
    assert!(n.summary.contains("holds GPU memory"), "{}", n.summary);
    assert!(n.body.contains("8.0 GiB at 1 %"), "{}", n.body);
    assert!(
        n.body.contains("30m") || n.body.contains("30 min"),
        "{}",
        n.body
    );
    assert!(decide(&ev, "lab", "Lab 1", "ann", now, &without("idle_held")).is_none());
}

#[test]
fn a_failed_stage_or_save_is_notified_with_its_reason() {
    let now = Utc::now();
    let b = booking("ann", now + Duration::hours(1), 2);
    let mut ev = event(EventKind::StageFailed, b.clone(), now);
    ev.note = Some(Note::TransferFailed {
        reason: "coco: /nfs/coco: Permission denied (os error 13)".into(),
        attempts: 1,
    });
    let n = decide(&ev, "lab", "Lab 1", "ann", now, &Settings::default()).unwrap();
    assert_eq!(n.kind, "stage_failed");
    assert!(n.body.contains("Permission denied"), "{}", n.body);
    ev.kind = EventKind::SaveFailed;
    let n = decide(&ev, "lab", "Lab 1", "ann", now, &Settings::default()).unwrap();
    assert_eq!(n.kind, "save_failed");
    assert!(
        n.body.contains("stay where the job left them"),
        "{}",
        n.body
    );
    let mut progress = event(EventKind::StageProgress, b.clone(), now);
    let stage = |late| Note::Stage {
        name: "coco".into(),
        done_bytes: 1,
        total_bytes: 100,
        copied_files: 1,
        kept_files: 0,
        dir: "/scratch/gpubook/ann/booking-7".into(),
        late,
    };
    progress.note = Some(stage(false));
    assert!(decide(&progress, "lab", "Lab 1", "ann", now, &Settings::default()).is_none());
    progress.note = Some(stage(true));
    let n = decide(&progress, "lab", "Lab 1", "ann", now, &Settings::default()).unwrap();
    assert!(
        n.summary.contains("will not be ready in time"),
        "{}",
        n.summary
    );
    assert!(decide(&ev, "lab", "Lab 1", "ann", now, &without("save_failed")).is_none());
}

#[test]
fn a_job_that_saves_results_is_announced_once_with_how_it_ended() {
    let now = Utc::now();
    let mut b = booking("ann", now - Duration::hours(1), 2);
    b.job = Some(gpubook_core::JobSpec {
        command: "python train.py".into(),
        save: vec!["runs/**/best.pt".into()],
        save_to: Some("s3://b/{id}/".into()),
        ..Default::default()
    });
    b.run = Some(finished_62_minutes(now, 0));
    let all = Settings::default();
    let finished = event(EventKind::JobFinished, b.clone(), now);
    assert!(decide(&finished, "lab", "Lab 1", "ann", now, &all).is_none());
    let mut saved = event(EventKind::JobSaved, b, now);
    saved.note = Some(Note::Saved {
        to: "s3://b/7/".into(),
        files: vec![gpubook_core::booking::SavedFile {
            name: "runs/a/best.pt".into(),
            size: 10,
            sha256: "00".into(),
        }],
    });
    let n = decide(&saved, "lab", "Lab 1", "ann", now, &all).unwrap();
    assert_eq!(n.kind, "job_saved");
    assert!(n.summary.contains("ended; results saved"), "{}", n.summary);
    assert!(
        n.body
            .starts_with("It exited with code 0 after 1h 2m. 1 file saved to s3://b/7/"),
        "{}",
        n.body
    );
    // Without the save's notice, the job's own is shown.
    let n = decide(&finished, "lab", "Lab 1", "ann", now, &without("job_saved")).unwrap();
    assert_eq!(n.kind, "job_finished");
}

#[test]
fn finished_job_says_exit_code_and_duration() {
    let now = Utc::now();
    let mut b = booking("ann", now - Duration::hours(1), 2);
    b.run = Some(finished_62_minutes(now, 3));
    let n = decide(
        &event(EventKind::JobFinished, b, now),
        "lab",
        "Lab 1",
        "ann",
        now,
        &Settings::default(),
    )
    .unwrap();
    assert!(
        n.body.contains("failed with exit code 3 after 1h 2m"),
        "{}",
        n.body
    );
}

#[test]
fn others_old_and_unwanted_events_are_not_shown() {
    let now = Utc::now();
    let b = booking("ann", now + Duration::minutes(5), 1);
    let s = Settings::default();
    let ev = event(EventKind::SlotStarting, b.clone(), now);
    assert!(decide(&ev, "lab", "Lab", "bob", now, &s).is_none());
    assert!(decide(&ev, "lab", "Lab", "ann", now, &s).is_some());
    // Caught up after a restart: older than the limit.
    let old = event(
        EventKind::SlotStarting,
        b,
        now - CATCH_UP_LIMIT - Duration::seconds(1),
    );
    assert!(decide(&old, "lab", "Lab", "ann", now, &s).is_none());
    let mut off = Settings::default();
    off.notify.insert("slot_starting".into(), false);
    assert!(decide(&ev, "lab", "Lab", "ann", now, &off).is_none());
    // Bookkeeping events are never shown.
    let created = event(EventKind::BookingCreated, ev.booking.clone(), now);
    assert!(decide(&created, "lab", "Lab", "ann", now, &s).is_none());
    assert!(server_notice("Lab", false, Some("refused"), &s)
        .unwrap()
        .summary
        .contains("cannot be reached"));
    // A changed host key is said as a refusal, not as an outage the app waits out.
    let n = host_key_notice("Lab", "the host key of Lab has CHANGED (now ...)", &s).unwrap();
    assert_eq!(n.summary, "Lab refused: its host key changed");
    assert!(
        n.body.contains("CHANGED") && !n.body.contains("keeps trying"),
        "{n:?}"
    );
    assert!(host_key_notice("Lab", "x", &off_unreachable()).is_none());
}

/// Settings with "server unreachable" notices off.
fn off_unreachable() -> Settings {
    let mut s = Settings::default();
    s.notify.insert("server_unreachable".into(), false);
    s
}

/// Every notice the person sees for `events`, in order.
fn shown(events: &[Event], now: DateTime<Utc>, s: &Settings) -> Vec<Notice> {
    events
        .iter()
        .filter_map(|e| decide(e, "lab", "Lab 1", "ann", now, s))
        .collect()
}

#[test]
fn a_job_that_finishes_and_releases_its_slot_is_one_notice() {
    let now = Utc::now();
    let mut b = booking("ann", now - Duration::minutes(62), 2);
    b.job = Some(gpubook_core::JobSpec {
        command: "python train.py".into(),
        ..Default::default()
    });
    // A 2-hour slot: its end warning is due, but the job ended first.
    let mut running = b.clone();
    running.run = Some(JobRun {
        state: JobState::Running,
        ended_at: None,
        exit_code: None,
        ..finished_62_minutes(now, 0)
    });
    b.run = Some(finished_62_minutes(now, 0));
    let s = Settings::default();
    let life = [
        event(EventKind::SlotStarting, b.clone(), now),
        event(EventKind::SlotStarted, b.clone(), now),
        event(EventKind::JobStarted, running.clone(), now),
        event(EventKind::JobFinished, b.clone(), now),
        event(EventKind::BookingReleased, b.clone(), now),
        event(EventKind::SlotEnding, b.clone(), now),
        event(EventKind::SlotEnded, b.clone(), now),
    ];
    let n = shown(&life, now, &s);
    assert_eq!(n.len(), 1, "{n:#?}");
    assert_eq!(n[0].kind, "job_finished");
    assert!(
        n[0].body.contains("exited with code 0 after 1h 2m"),
        "{n:?}"
    );

    // While the job still runs, the end warning can save its work: it is shown.
    let n = shown(&[event(EventKind::SlotEnding, running, now)], now, &s);
    assert_eq!(n.len(), 1);
    assert!(n[0].extend.is_some());
}

#[test]
fn a_slot_too_short_for_its_end_warning_says_its_end_as_it_starts() {
    let now = Utc::now();
    let mut b = booking("ann", now, 1);
    b.interval = Interval::new(now, now + Duration::minutes(10)).unwrap();
    b.state = BookingState::Active;
    // The agent's plan marks the end as announced when the slot is too short to be warned.
    b.warned_end = true;
    let n = shown(
        &[event(EventKind::SlotStarted, b.clone(), now)],
        now,
        &Settings::default(),
    );
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].kind, "slot_started");
    assert!(
        n[0].summary.ends_with("has started; it ends in 10m"),
        "{}",
        n[0].summary
    );
    assert_eq!(
        n[0].extend.as_ref().map(|e| e.to),
        Some(b.interval.end + EXTEND_BY)
    );
    // Someone who wants end warnings but not starts still gets this one, as the warning.
    let n = shown(
        &[event(EventKind::SlotStarted, b.clone(), now)],
        now,
        &without("slot_started"),
    );
    assert_eq!(n[0].kind, "slot_ending");

    // A slot long enough for its warning starts with its end time only.
    b.warned_end = false;
    let n = shown(
        &[event(EventKind::SlotStarted, b, now)],
        now,
        &Settings::default(),
    );
    assert_eq!(n[0].summary, "\u{201c}train\u{201d} has started");
    assert!(n[0].extend.is_none());
}

#[test]
fn a_job_that_could_not_start_says_why() {
    let now = Utc::now();
    let mut b = booking("ann", now, 1);
    b.job = Some(gpubook_core::JobSpec {
        command: "trian.py".into(),
        ..Default::default()
    });
    b.run = Some(JobRun {
        state: JobState::FailedToStart,
        message: Some("the command could not run: trian.py: not found".into()),
        ..finished_62_minutes(now, 127)
    });
    let n = shown(
        &[event(EventKind::JobFailed, b, now)],
        now,
        &Settings::default(),
    );
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].kind, "job_failed");
    assert_eq!(n[0].summary, "Job of \u{201c}train\u{201d} could not start");
    assert!(
        n[0].body
            .starts_with("The command could not run: trian.py: not found ("),
        "{}",
        n[0].body
    );
}

#[test]
fn maintenance_tells_the_owner_the_reason_and_the_new_time() {
    let now = Utc::now();
    let before = booking("ann", now + Duration::hours(2), 1);
    let mut moved = before.clone();
    moved.interval = Interval::new(now + Duration::hours(6), now + Duration::hours(7)).unwrap();
    let window = Interval::new(now + Duration::hours(1), now + Duration::hours(6)).unwrap();
    let mut ev = event(EventKind::BookingChanged, moved, now);
    ev.before = Some(before.interval);
    ev.note = Some(Note::Maintenance {
        id: gpubook_core::MaintenanceId(1),
        reason: "driver 570".into(),
        window,
        outcome: MaintenanceOutcome::Moved,
    });
    let n = decide(&ev, "lab", "Lab 1", "ann", now, &Settings::default()).unwrap();
    assert_eq!(n.kind, "maintenance");
    assert!(n.summary.contains("moved for maintenance"), "{}", n.summary);
    assert!(n.body.contains("driver 570"), "{}", n.body);
    assert!(
        n.body.contains(&local_time(now + Duration::hours(6), now)),
        "{}",
        n.body
    );
    // Someone else's booking says nothing to ann; turned off, nothing either.
    let mut theirs = ev.clone();
    theirs.booking.owner = "bob".into();
    assert!(decide(&theirs, "lab", "Lab 1", "ann", now, &Settings::default()).is_none());
    assert!(decide(&ev, "lab", "Lab 1", "ann", now, &without("maintenance")).is_none());
    // Cancelled.
    let mut gone = ev.clone();
    gone.kind = EventKind::BookingCancelled;
    if let Some(Note::Maintenance { outcome, .. }) = &mut gone.note {
        *outcome = MaintenanceOutcome::Cancelled;
    }
    let n = decide(&gone, "lab", "Lab 1", "ann", now, &Settings::default()).unwrap();
    assert!(
        n.summary.contains("cancelled for maintenance"),
        "{}",
        n.summary
    );
}
