//! A job whose main process ends on the end signal while something it started ignores it: the
//! rest is SIGKILLed after the grace period, and the job is recorded as killed (SIGKILL), not
//! as stopped by the end signal its main process died of.
//!
//! The real agent runs as root; the owner is a real non-root user. Needs root; see
//! `jobs_support`.

mod jobs_support;

use gpubook_core::{JobSpec, JobState};
use gpubook_proto::EventKind;
use jobs_support::{
    book, booked, ensure_user, gone, job, listed, read_when_there, require_root, secs, slot_start,
    wait_until_within, Events, Lab, DEADLINE, JOBBER,
};
use std::time::Duration;

/// Dies of SIGTERM (bash's default) while its child ignores SIGTERM and sleeps on.
const HALF_STUBBORN: &str = r#"#!/bin/bash
out="$1"
(trap '' TERM; echo $BASHPID > "$out/child.tmp"; mv "$out/child.tmp" "$out/child"; exec sleep 1000) &
while [ ! -e "$out/child" ]; do sleep 0.05; done
echo $$ > "$out/pid"
touch "$out/ready"
wait
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_during_its_grace_is_recorded_as_killed_not_as_stopped_by_sigterm() {
    if !require_root(
        "a_job_killed_during_its_grace_is_recorded_as_killed_not_as_stopped_by_sigterm",
    ) {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(2);
    lab.start().await;
    let (out, script) = (
        lab.out_dir("out", &jobber),
        lab.script("half-stubborn.sh", HALF_STUBBORN),
    );
    let (mut events, user) = (Events::subscribe(&lab).await, lab.connect_as(&jobber).await);

    // A 3 s slot with a 2 s grace on GPU 1, starting in 3 s.
    let grace = 2;
    let start = slot_start(3);
    let end = start + secs(3);
    let spec = JobSpec {
        grace_secs: Some(grace),
        ..job(&format!("{} {}", script.display(), out.display()))
    };
    let asked = book(&["1"], start, end, "half stubborn", Some(spec));
    let b = booked(user.conn.request(asked).await).booking;
    events.wait_for(b.id, EventKind::JobStarted, DEADLINE).await;
    read_when_there(&out.join("ready"), DEADLINE).await;
    let child: u32 = read_when_there(&out.join("child"), DEADLINE)
        .await
        .trim()
        .parse()
        .expect("the child's pid");

    let stopped = events.wait_for(b.id, EventKind::JobStopped, DEADLINE).await;
    let limit = (end + secs(i64::from(grace) + 3) - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    wait_until_within("the child that ignored SIGTERM to be gone", limit, || {
        gone(child)
    })
    .await;
    let run = stopped.booking.run.clone().expect("a run");
    assert_eq!(run.state, JobState::Stopped, "{run:?}");
    assert_eq!(
        run.signal,
        Some(libc::SIGKILL),
        "killed in its grace, so recorded as killed: {run:?}"
    );
    assert_eq!(run.exit_code, None, "{run:?}");
    let message = run.message.clone().unwrap_or_default();
    assert!(
        message.contains("killed with SIGKILL") && message.contains("SIGTERM"),
        "{message}"
    );
    let ended = run.ended_at.expect("ended_at");
    assert!(
        ended >= end + secs(i64::from(grace)),
        "killed at {ended}, before the end ({end}) + grace ({grace} s)"
    );
    // What `ls` and `wait` read later says the same.
    let later = listed(&user.conn, b.id).await.run.expect("a run");
    assert_eq!(later.signal, Some(libc::SIGKILL), "{later:?}");
}
