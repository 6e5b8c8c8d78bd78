//! The agent restarting does not stop jobs: killed with SIGKILL while a job runs and started
//! again on the same state directory, it re-adopts the job (never starting it twice) and still
//! stops it at its slot's end. A job that vanished while the agent was down is reported lost;
//! a recorded pid that now belongs to another process is not mistaken for the job, and that
//! process is left alone. A job whose main process ended while the agent was down, leaving
//! processes it started behind, still has them stopped by the end of its slot.
//!
//! Real agent binary, real jobs run as a real non-root user. Needs root; see `jobs_support`.

mod jobs_support;

use gpubook_core::{BookingState, ChangeKind, JobState};
use gpubook_proto::EventKind;
use jobs_support::{
    book, booked, ensure_user, gone, job_key_of, job_processes, kill, listed, require_root,
    running_job, running_script, secs, slot_start, start_ticks, wait_until_within, Events, Lab,
    DEADLINE, JOBBER,
};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

fn starts(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("starts"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_an_agent_killed_with_sigkill_and_is_still_stopped_at_its_end() {
    if !require_root("a_job_survives_an_agent_killed_with_sigkill_and_is_still_stopped_at_its_end")
    {
        return;
    }
    let (mut lab, b, out, pid) = running_job(8, 5).await;
    let end = b.interval.end;

    lab.kill();
    assert!(!gone(pid), "the job died with the agent");
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    if chrono::Utc::now() < end {
        assert!(
            !gone(pid),
            "the restarted agent ended the job before its slot's end"
        );
    }

    let stopped = events.wait_for(b.id, EventKind::JobStopped, DEADLINE).await;
    wait_until_within(
        "the re-adopted job to be gone",
        (end + secs(7) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
        || gone(pid),
    )
    .await;
    // Started once, stopped once, with its signal.
    assert_eq!(starts(&out).len(), 1, "{:?}", starts(&out));
    assert_eq!(events.count(b.id, EventKind::JobStarted), 1);
    assert_eq!(
        std::fs::read_to_string(out.join("signal")).unwrap().trim(),
        "got TERM"
    );
    let run = stopped.booking.run.clone().expect("a run");
    assert_eq!(run.state, JobState::Stopped, "{run:?}");
    let message = run.message.clone().unwrap_or_default();
    assert!(
        message.contains("SIGTERM") && !message.contains("SIGKILL"),
        "the job exited on SIGTERM at once, yet: {message}"
    );
    let ended = run.ended_at.expect("ended_at");
    assert!(
        ended >= end && ended < end + secs(5),
        "stopped at {ended}; the slot ended at {end}, grace 5 s"
    );
    let root = lab.root().await;
    let now = listed(&root, b.id).await;
    assert_eq!(now.state, BookingState::Ended);
    assert_eq!(now.run.map(|r| r.state), Some(JobState::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_vanished_while_the_agent_was_down_is_lost_and_not_started_again() {
    if !require_root("a_job_that_vanished_while_the_agent_was_down_is_lost_and_not_started_again") {
        return;
    }
    let (mut lab, b, out, pid) = running_job(60, 5).await;

    lab.kill();
    // The whole job (it leads its own process group) dies meanwhile.
    kill(-(pid as i32), libc::SIGKILL);
    wait_until_within("the job to die", DEADLINE, || gone(pid)).await;
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;

    let lost = events.wait_for(b.id, EventKind::JobLost, DEADLINE).await;
    let run = lost.booking.run.clone().expect("a run");
    assert_eq!(run.state, JobState::Lost, "{run:?}");
    let message = run.message.clone().unwrap_or_default();
    assert!(
        message.contains("while the agent was not running"),
        "{message}"
    );
    // Nothing is started again: a probe made afterwards comes next, and the job ran once.
    let root = lab.root().await;
    let far = slot_start(86_400);
    let probe = booked(
        root.request(book(&["1"], far, far + secs(60), "probe", None))
            .await,
    );
    events
        .wait_for(probe.booking.id, EventKind::BookingCreated, DEADLINE)
        .await;
    assert_eq!(events.count(b.id, EventKind::JobStarted), 1);
    assert_eq!(starts(&out).len(), 1, "{:?}", starts(&out));
    assert_eq!(
        listed(&root, b.id).await.run.map(|r| r.state),
        Some(JobState::Lost)
    );
}

/// A process the test starts, killed on drop.
struct Decoy(std::process::Child);

impl Drop for Decoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_pid_is_not_mistaken_for_the_job_and_is_left_alone() {
    if !require_root("a_reused_pid_is_not_mistaken_for_the_job_and_is_left_alone") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let (mut lab, b, out, pid) = running_job(6, 5).await;
    let end = b.interval.end;

    lab.kill();
    kill(-(pid as i32), libc::SIGKILL);
    wait_until_within("the job to die", DEADLINE, || gone(pid)).await;
    // Another process of the same user now has the pid the agent recorded: the record is
    // changed to point at it, keeping the job's start time, as when the pid is reused.
    let mut decoy = Decoy(
        std::process::Command::new("sleep")
            .arg("1000")
            .uid(jobber.uid)
            .gid(jobber.gid)
            .spawn()
            .expect("start the decoy"),
    );
    let decoy_pid = decoy.0.id();
    let recorded = lab.with_state(|s| {
        let b = s.lock().plan.get(b.id).cloned().expect("the booking");
        let run = b.run.expect("a run");
        assert_eq!(run.pid, Some(pid));
        let ticks = run.start_ticks.expect("the job's start time is recorded");
        s.observe(b.id, ChangeKind::Changed, None, |b| {
            if let Some(r) = b.run.as_mut() {
                r.pid = Some(decoy_pid);
            }
        })
        .expect("change the record");
        ticks
    });
    wait_until_within("the decoy to run", DEADLINE, || {
        start_ticks(decoy_pid).is_some()
    })
    .await;
    assert_ne!(
        start_ticks(decoy_pid),
        Some(recorded),
        "the decoy started in the same tick as the job"
    );

    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let lost = events.wait_for(b.id, EventKind::JobLost, DEADLINE).await;
    assert_eq!(
        lost.booking.run.as_ref().map(|r| r.state),
        Some(JobState::Lost)
    );
    // Through the slot's end, the decoy is never signalled.
    events.wait_for(b.id, EventKind::SlotEnded, DEADLINE).await;
    assert!(chrono::Utc::now() >= end);
    let root = lab.root().await;
    let far = slot_start(86_400);
    let probe = booked(
        root.request(book(&["1"], far, far + secs(60), "probe", None))
            .await,
    );
    events
        .wait_for(probe.booking.id, EventKind::BookingCreated, DEADLINE)
        .await;
    assert!(
        decoy.0.try_wait().expect("try_wait").is_none(),
        "the process that reused the job's pid was killed"
    );
    assert!(!gone(decoy_pid));
    assert_eq!(events.count(b.id, EventKind::JobStopped), 0);
    assert_eq!(events.count(b.id, EventKind::JobStarted), 1);
    assert_eq!(starts(&out).len(), 1, "{:?}", starts(&out));
}

/// Starts a child that leaves its session with setsid, and a background sleep; then waits.
/// Both carry the job's key, so they are the job's even after its main process is gone.
const LEAVER: &str = r#"#!/bin/bash
out="$1"
setsid sh -c 'echo $$ > "$1/child.tmp"; mv "$1/child.tmp" "$1/child"; exec sleep 1000' sh "$out" &
while [ ! -e "$out/child" ]; do sleep 0.05; done
touch "$out/ready"
sleep 1000 &
wait $!
"#;

/// The jobber's LEAVER job runs; the agent is killed, and then only the job's main process
/// (not what it started) is killed. Returns the lab (agent stopped), the booking, the job's key
/// and the pid of its setsid child.
async fn main_process_gone_while_agent_down() -> (Lab, gpubook_core::Booking, String, u32) {
    let (mut lab, b, out, pid) = running_script(LEAVER, 6, 2).await;
    let child: u32 = std::fs::read_to_string(out.join("child"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let key = job_key_of(child).expect("the child carries the job's key");
    assert!(
        job_processes(&key).len() >= 2,
        "the job should have left processes: {:?}",
        job_processes(&key)
    );
    lab.kill();
    kill(pid as i32, libc::SIGKILL);
    wait_until_within("the job's main process to die", DEADLINE, || gone(pid)).await;
    assert!(!gone(child), "the setsid child died with the main process");
    (lab, b, key, child)
}

/// Waits until booking `id` is over (its slot ended, or it was released).
async fn until_over(lab: &Lab, id: gpubook_core::BookingId) {
    let root = lab.root().await;
    let until = std::time::Instant::now() + DEADLINE;
    while listed(&root, id).await.state != BookingState::Ended {
        assert!(
            std::time::Instant::now() < until,
            "booking {id} never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_job_left_behind_when_its_main_process_ended_during_a_restart_is_still_stopped() {
    if !require_root(
        "what_a_job_left_behind_when_its_main_process_ended_during_a_restart_is_still_stopped",
    ) {
        return;
    }
    let (mut lab, b, key, child) = main_process_gone_while_agent_down().await;
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    until_over(&lab, b.id).await;
    // By the slot's end plus the grace period (2 s), nothing of the job runs.
    let limit = (b.interval.end.max(chrono::Utc::now()) + secs(2 + 3) - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    let until = std::time::Instant::now() + limit;
    while !job_processes(&key).is_empty() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = job_processes(&key);
    // Collect what the agent reported before failing, for the message.
    let root = lab.root().await;
    let far = slot_start(86_400);
    let probe = booked(
        root.request(book(&["1"], far, far + secs(60), "probe", None))
            .await,
    );
    events
        .wait_for(probe.booking.id, EventKind::BookingCreated, DEADLINE)
        .await;
    assert!(
        left.is_empty(),
        "processes of the job still run after its slot ended (setsid child {child}): {left:?}; \
         events:\n{}",
        events.describe()
    );
    assert_eq!(events.count(b.id, EventKind::JobStarted), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_pid_is_left_alone_while_what_the_job_left_behind_is_stopped() {
    if !require_root("a_reused_pid_is_left_alone_while_what_the_job_left_behind_is_stopped") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let (mut lab, b, key, child) = main_process_gone_while_agent_down().await;
    // The main process's pid now belongs to another process of the same user.
    let mut decoy = Decoy(
        std::process::Command::new("sleep")
            .arg("1000")
            .uid(jobber.uid)
            .gid(jobber.gid)
            .process_group(0)
            .spawn()
            .expect("start the decoy"),
    );
    let decoy_pid = decoy.0.id();
    let recorded = lab.with_state(|s| {
        let ticks = s
            .lock()
            .plan
            .get(b.id)
            .and_then(|b| b.run.as_ref()?.start_ticks)
            .expect("the job's start time is recorded");
        s.observe(b.id, ChangeKind::Changed, None, |b| {
            if let Some(r) = b.run.as_mut() {
                r.pid = Some(decoy_pid);
            }
        })
        .expect("change the record");
        ticks
    });
    wait_until_within("the decoy to run", DEADLINE, || {
        start_ticks(decoy_pid).is_some()
    })
    .await;
    assert_ne!(start_ticks(decoy_pid), Some(recorded));

    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    until_over(&lab, b.id).await;
    let limit = (b.interval.end.max(chrono::Utc::now()) + secs(2 + 3) - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    let until = std::time::Instant::now() + limit;
    while !job_processes(&key).is_empty() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let root = lab.root().await;
    let far = slot_start(86_400);
    let probe = booked(
        root.request(book(&["1"], far, far + secs(60), "probe", None))
            .await,
    );
    events
        .wait_for(probe.booking.id, EventKind::BookingCreated, DEADLINE)
        .await;
    assert!(
        decoy.0.try_wait().expect("try_wait").is_none(),
        "the process that reused the job's pid was killed; events:\n{}",
        events.describe()
    );
    let left = job_processes(&key);
    assert!(
        left.is_empty(),
        "processes of the job still run after its slot ended (setsid child {child}): {left:?}; \
         events:\n{}",
        events.describe()
    );
}
