//! A booking's job, with real processes and a real non-root owner: started at the slot's start
//! as its owner with exactly the booked GPUs, stopped at the slot's end with its signal (and
//! SIGKILL after the grace period when it ignores it), everything it started included; and a
//! job that ends early gives the rest of its slot back so a queued request moves up.
//!
//! The real agent runs as root with a shared socket and a one-second grid; the owner books
//! through `gpubook-agent bridge` run as them. Needs root; see `jobs_support`.

mod jobs_support;

use gpubook_core::{BookingState, JobState};
use gpubook_proto::EventKind;
use jobs_support::{
    book, book_asap, booked, ensure_user, gone, group_of, job, listed, parse_env, read_when_there,
    require_root, secs, session_of, sim_uuid, slot_start, wait_until_within, Events, Lab, DEADLINE,
    JOBBER, OTHER,
};
use std::time::Duration;

/// Records when it started, as whom, with what environment; traps SIGTERM ("got TERM", exit
/// 0); starts a child that leaves its process group and session with setsid; then waits.
const RECORDER: &str = r#"#!/bin/bash
out="$1"
started=$(date +%s.%N)
trap 'echo "got TERM" > "$out/signal"; exit 0' TERM
setsid sh -c 'echo $$ > "$1/child.tmp"; mv "$1/child.tmp" "$1/child"; exec sleep 1000' sh "$out" &
id -u > "$out/uid"
id -g > "$out/gid"
env > "$out/env"
echo $$ > "$out/pid"
echo "$started" > "$out/started"
echo "recorder: on stdout"
echo "recorder: on stderr" >&2
while [ ! -e "$out/child" ]; do sleep 0.05; done
touch "$out/ready"
sleep 1000 &
wait $!
"#;

/// Ignores SIGTERM, and so does the child it starts in a session of its own.
const STUBBORN: &str = r#"#!/bin/bash
out="$1"
trap '' TERM
setsid sh -c 'echo $$ > "$1/child.tmp"; mv "$1/child.tmp" "$1/child"; while :; do sleep 0.2; done' sh "$out" &
echo $$ > "$out/pid"
while [ ! -e "$out/child" ]; do sleep 0.05; done
touch "$out/ready"
while :; do sleep 0.2; done
"#;

fn pid_in(path: &std::path::Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{} holds no pid: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_starts_on_time_as_its_owner_on_its_gpus_and_is_stopped_at_the_end() {
    if !require_root("a_job_starts_on_time_as_its_owner_on_its_gpus_and_is_stopped_at_the_end") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(4);
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let out = lab.out_dir("out", &jobber);
    let script = lab.script("recorder.sh", RECORDER);
    let user = lab.connect_as(&jobber).await;

    let start = slot_start(3);
    let end = start + secs(4);
    let grace = 5;
    let mut spec = job(&format!("{} {}", script.display(), out.display()));
    spec.grace_secs = Some(grace);
    // GPUs named out of order: the job sees them in index order.
    let b = booked(
        user.conn
            .request(book(&["2", "0"], start, end, "recorder", Some(spec)))
            .await,
    )
    .booking;
    assert_eq!(b.owner, JOBBER);
    assert_eq!((b.interval.start, b.interval.end), (start, end));

    let started = events.wait_for(b.id, EventKind::JobStarted, DEADLINE).await;
    read_when_there(&out.join("ready"), DEADLINE).await;

    // On time: within 1 s of the slot's start, never before it.
    let at: f64 = read_when_there(&out.join("started"), DEADLINE)
        .await
        .trim()
        .parse()
        .expect("date +%s.%N");
    let delay = at - start.timestamp() as f64;
    println!("job start delay: {:.3} s after the slot's start", delay);
    assert!(
        (0.0..1.0).contains(&delay),
        "the job started {delay:.3} s after its slot's start"
    );

    // As its owner, not root.
    let uid: u32 = std::fs::read_to_string(out.join("uid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gid: u32 = std::fs::read_to_string(out.join("gid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!((uid, gid), (jobber.uid, jobber.gid));

    // Exactly the booked GPUs, by UUID, in index order.
    let env = parse_env(&std::fs::read_to_string(out.join("env")).unwrap());
    let gpus = format!("{},{}", sim_uuid(0), sim_uuid(2));
    assert_eq!(env.get("CUDA_VISIBLE_DEVICES"), Some(&gpus), "{env:#?}");
    assert_eq!(env.get("GPUBOOK_GPUS"), Some(&gpus), "{env:#?}");
    assert_eq!(
        env.get("CUDA_DEVICE_ORDER").map(String::as_str),
        Some("PCI_BUS_ID")
    );
    assert_eq!(env.get("GPUBOOK_BOOKING_ID"), Some(&b.id.to_string()));
    let slot_end = env
        .get("GPUBOOK_SLOT_END")
        .expect("GPUBOOK_SLOT_END is set");
    let slot_end = chrono::DateTime::parse_from_rfc3339(slot_end)
        .unwrap_or_else(|e| panic!("GPUBOOK_SLOT_END {slot_end:?} is not ISO 8601: {e}"));
    assert_eq!(slot_end, end);
    assert_eq!(env.get("USER").map(String::as_str), Some(JOBBER));
    assert_eq!(
        env.get("HOME").map(String::as_str),
        jobber.home.to_str(),
        "{env:#?}"
    );

    // The agent's record of the run.
    let run = started.booking.run.clone().expect("a run");
    assert_eq!(run.state, JobState::Running);
    let pid = run.pid.expect("the job's pid");
    assert!(run.log.is_some(), "{run:?}");
    let script_pid = pid_in(&out.join("pid"));
    let child = pid_in(&out.join("child"));
    // The child escaped: another session and process group than the job's.
    assert_ne!(
        session_of(child),
        session_of(script_pid),
        "setsid did not work"
    );
    assert_ne!(group_of(child), group_of(script_pid));
    // Not stopped before its end.
    assert!(
        !gone(pid) && !gone(child),
        "the job ended before its slot's end"
    );
    assert!(!out.join("signal").exists(), "signalled before the end");

    // At the end: the signal, and everything gone within the grace period.
    let stopped = events.wait_for(b.id, EventKind::JobStopped, DEADLINE).await;
    let limit = (end + secs(i64::from(grace) + 2) - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    wait_until_within(
        "the job and its setsid child to be gone by end + grace",
        limit,
        || gone(pid) && gone(script_pid) && gone(child),
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(out.join("signal")).unwrap().trim(),
        "got TERM"
    );
    let run = stopped.booking.run.clone().expect("a run");
    assert_eq!(run.state, JobState::Stopped, "{run:?}");
    let message = run.message.clone().unwrap_or_default();
    assert!(message.contains("SIGTERM"), "{message}");
    assert!(!message.contains("SIGKILL"), "{message}");
    let ended = run.ended_at.expect("ended_at");
    assert!(
        ended >= end && ended < end + secs(i64::from(grace)),
        "stopped at {ended}, the slot ended at {end}"
    );
    println!(
        "slot end to the job being gone: {:.3} s",
        (ended - end).num_milliseconds() as f64 / 1000.0
    );

    // What a user listing sees.
    let now = listed(&user.conn, b.id).await;
    assert_eq!(now.state, BookingState::Ended);
    assert_eq!(now.run.map(|r| r.state), Some(JobState::Stopped));
    // Started once; each step announced.
    events.wait_for(b.id, EventKind::SlotEnded, DEADLINE).await;
    assert_eq!(events.count(b.id, EventKind::SlotStarted), 1);
    assert_eq!(events.count(b.id, EventKind::JobStarted), 1);
    assert_eq!(events.count(b.id, EventKind::JobStopped), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ignores_sigterm_is_killed_after_the_grace_period() {
    if !require_root("a_job_that_ignores_sigterm_is_killed_after_the_grace_period") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(2);
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let out = lab.out_dir("out", &jobber);
    let script = lab.script("stubborn.sh", STUBBORN);
    let user = lab.connect_as(&jobber).await;

    let start = slot_start(3);
    let end = start + secs(3);
    let grace = 2;
    let mut spec = job(&format!("{} {}", script.display(), out.display()));
    spec.grace_secs = Some(grace);
    let b = booked(
        user.conn
            .request(book(&["1"], start, end, "stubborn", Some(spec)))
            .await,
    )
    .booking;
    let started = events.wait_for(b.id, EventKind::JobStarted, DEADLINE).await;
    read_when_there(&out.join("ready"), DEADLINE).await;
    let pid = started.booking.run.and_then(|r| r.pid).expect("pid");
    let child = pid_in(&out.join("child"));

    let stopped = events.wait_for(b.id, EventKind::JobStopped, DEADLINE).await;
    let limit = (end + secs(i64::from(grace) + 3) - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    wait_until_within("the stubborn job and its child to be gone", limit, || {
        gone(pid) && gone(child)
    })
    .await;
    let run = stopped.booking.run.clone().expect("a run");
    assert_eq!(run.state, JobState::Stopped, "{run:?}");
    assert_eq!(run.signal, Some(libc::SIGKILL), "{run:?}");
    let message = run.message.clone().unwrap_or_default();
    assert!(
        message.contains("SIGKILL") && message.contains("SIGTERM"),
        "the event should say it was killed after ignoring SIGTERM: {message}"
    );
    assert!(message.contains(&format!("{grace} s")), "{message}");
    // Killed after the grace period, not before.
    let ended = run.ended_at.expect("ended_at");
    assert!(
        ended >= end + secs(i64::from(grace)),
        "killed at {ended}, before the end ({end}) + grace ({grace} s)"
    );
    assert_eq!(
        listed(&user.conn, b.id).await.run.map(|r| r.state),
        Some(JobState::Stopped)
    );
}

/// Books a long slot on GPU 0 for a job that prints, waits 1 s and exits 3, and an "as soon as
/// possible" request by someone else that waits behind it; returns (lab, events, job booking,
/// queued booking, the owner's connection).
async fn early_end(
    keep_slot: bool,
) -> (
    Lab,
    Events,
    gpubook_core::Booking,
    gpubook_core::Booking,
    jobs_support::UserConn,
) {
    let jobber = ensure_user(JOBBER);
    let other = ensure_user(OTHER);
    let mut lab = Lab::new(2);
    lab.start().await;
    let events = Events::subscribe(&lab).await;
    let user = lab.connect_as(&jobber).await;
    let someone = lab.connect_as(&other).await;

    let start = slot_start(3);
    let end = start + secs(3600);
    let mut spec = job("echo early; sleep 1; exit 3");
    spec.keep_slot = keep_slot;
    let a = booked(
        user.conn
            .request(book(&["0"], start, end, "ends early", Some(spec)))
            .await,
    )
    .booking;
    let q = booked(
        someone
            .conn
            .request(book_asap(&["0"], 600, "queued", None))
            .await,
    )
    .booking;
    assert_eq!(q.owner, OTHER);
    assert_eq!(
        q.interval.start, end,
        "the queued request waits for the long slot"
    );
    (lab, events, a, q, user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ends_early_releases_its_slot_and_the_queue_moves_up() {
    if !require_root("a_job_that_ends_early_releases_its_slot_and_the_queue_moves_up") {
        return;
    }
    let (lab, mut events, a, q, user) = early_end(false).await;

    let finished = events
        .wait_for(a.id, EventKind::JobFinished, DEADLINE)
        .await;
    let run = finished.booking.run.clone().expect("a run");
    assert_eq!(run.state, JobState::Finished, "{run:?}");
    assert_eq!(run.exit_code, Some(3), "{run:?}");
    let message = run.message.clone().unwrap_or_default();
    assert!(message.contains("exit 3"), "{message}");
    let ran = run.ended_at.unwrap() - run.started_at.unwrap();
    assert!(
        ran >= secs(1) && ran < secs(5),
        "the job ran {ran}, it sleeps 1 s"
    );

    // The rest of the slot goes back: the booking ends about when the job did.
    let released = events
        .wait_for(a.id, EventKind::BookingReleased, DEADLINE)
        .await;
    assert_eq!(released.booking.state, BookingState::Ended);
    assert_eq!(released.before.map(|i| i.end), Some(a.interval.end));
    let new_end = released.booking.interval.end;
    let finish = run.ended_at.unwrap();
    assert!(
        (new_end - finish).num_milliseconds().abs() <= 1000,
        "released to {new_end}, the job finished at {finish}"
    );

    // The queued request moves up to then, and starts.
    let moved = events
        .wait_for(q.id, EventKind::BookingMovedEarlier, DEADLINE)
        .await;
    assert_eq!(moved.before, Some(q.interval));
    assert!(
        moved.booking.interval.start <= new_end + secs(1),
        "moved to {}, the GPU was free from {new_end}",
        moved.booking.interval.start
    );
    assert_eq!(moved.booking.interval.duration(), secs(600));
    events
        .wait_for(q.id, EventKind::SlotStarted, DEADLINE)
        .await;
    assert!(finished.seq < released.seq && released.seq < moved.seq);

    let now = listed(&user.conn, a.id).await;
    assert_eq!(now.state, BookingState::Ended);
    assert_eq!(now.run.map(|r| r.state), Some(JobState::Finished));
    assert_eq!(events.count(a.id, EventKind::JobStarted), 1);
    drop(lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ends_early_with_keep_slot_keeps_it() {
    if !require_root("a_job_that_ends_early_with_keep_slot_keeps_it") {
        return;
    }
    let (lab, mut events, a, q, user) = early_end(true).await;

    let finished = events
        .wait_for(a.id, EventKind::JobFinished, DEADLINE)
        .await;
    assert_eq!(finished.booking.run.as_ref().unwrap().exit_code, Some(3));
    // Nothing is released: the next event is a probe made after the job finished.
    let root = lab.root().await;
    let far = slot_start(86_400);
    let probe = booked(
        root.request(book(&["1"], far, far + secs(60), "probe", None))
            .await,
    );
    loop {
        let e = events.next(DEADLINE).await;
        if e.seq <= finished.seq {
            continue;
        }
        assert_eq!(
            (e.kind, e.booking.id),
            (EventKind::BookingCreated, probe.booking.id),
            "something happened after the job finished: {e:?}"
        );
        break;
    }
    let kept = listed(&user.conn, a.id).await;
    assert_eq!(kept.state, BookingState::Active);
    assert_eq!(kept.interval, a.interval);
    assert_eq!(kept.run.map(|r| r.state), Some(JobState::Finished));
    let queued = listed(&user.conn, q.id).await;
    assert_eq!(queued.interval, q.interval, "the queued request moved");
    assert_eq!(events.count(a.id, EventKind::BookingReleased), 0);
    assert_eq!(events.count(q.id, EventKind::BookingMovedEarlier), 0);
}
