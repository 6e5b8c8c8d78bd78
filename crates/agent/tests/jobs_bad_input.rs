//! Jobs that cannot run, and bookings with jobs that cannot be made: a command that does not
//! exist or is not executable and a working directory that does not exist fail to start (with
//! the reason, and the slot goes back); an end signal that is not a signal, and a job for
//! another user on an agent in personal mode, are refused when booking, saying why.
//!
//! Real agent binary, real non-root users. Needs root; see `jobs_support`.

mod jobs_support;

use gpubook_client::ClientError;
use gpubook_core::{BookingState, JobState};
use gpubook_proto::{ErrorBody, ErrorKind, EventKind, ListRequest};
use jobs_support::{
    book, booked, ensure_user, job, listed, require_root, secs, slot_start, Events, Lab, DEADLINE,
    JOBBER,
};
use std::os::unix::fs::PermissionsExt;

fn refused(r: Result<gpubook_proto::Response, ClientError>) -> ErrorBody {
    match r {
        Err(ClientError::Agent(e)) => e,
        other => panic!("expected the agent to refuse, got {other:?}"),
    }
}

/// Books `spec` for the jobber in a long slot starting in about 3 s, and waits until its job
/// failed to start and the slot was released; returns the failure and release events.
async fn fails_to_start(
    lab: &mut Lab,
    spec: gpubook_core::JobSpec,
) -> (gpubook_proto::Event, gpubook_proto::Event) {
    let jobber = ensure_user(JOBBER);
    lab.start().await;
    let mut events = Events::subscribe(lab).await;
    let user = lab.connect_as(&jobber).await;
    let start = slot_start(3);
    let end = start + secs(3600);
    let b = booked(
        user.conn
            .request(book(&["0"], start, end, "doomed", Some(spec)))
            .await,
    )
    .booking;
    let failed = events.wait_for(b.id, EventKind::JobFailed, DEADLINE).await;
    let run = failed.booking.run.clone().expect("a run");
    assert_eq!(run.state, JobState::FailedToStart, "{run:?}");
    // Its GPUs go back to the lab at once.
    let released = events
        .wait_for(b.id, EventKind::BookingReleased, DEADLINE)
        .await;
    assert_eq!(released.booking.state, BookingState::Ended);
    assert!(
        released.booking.interval.end < start + secs(10),
        "released to {}, the slot started at {start}",
        released.booking.interval.end
    );
    let now = listed(&user.conn, b.id).await;
    assert_eq!(now.state, BookingState::Ended);
    assert_eq!(now.run.map(|r| r.state), Some(JobState::FailedToStart));
    assert_eq!(events.count(b.id, EventKind::JobFinished), 0);
    (failed, released)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_does_not_exist_fails_to_start_with_the_shells_message() {
    if !require_root("a_command_that_does_not_exist_fails_to_start_with_the_shells_message") {
        return;
    }
    let mut lab = Lab::new(1);
    let (failed, _) = fails_to_start(&mut lab, job("gpb-no-such-command --epochs 50")).await;
    let run = failed.booking.run.expect("a run");
    let message = run.message.unwrap_or_default();
    assert!(
        message.contains("gpb-no-such-command") && message.contains("not found"),
        "the shell's message should say the command was not found: {message}"
    );
    assert_eq!(run.exit_code, Some(127));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_is_not_executable_fails_to_start_with_the_shells_message() {
    if !require_root("a_command_that_is_not_executable_fails_to_start_with_the_shells_message") {
        return;
    }
    let mut lab = Lab::new(1);
    let script = lab.script("not-executable.sh", "#!/bin/sh\necho should not run\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (failed, _) = fails_to_start(&mut lab, job(&script.display().to_string())).await;
    let run = failed.booking.run.expect("a run");
    let message = run.message.unwrap_or_default();
    assert!(
        message.contains("not-executable.sh") && message.contains("Permission denied"),
        "the shell's message should say it cannot be run: {message}"
    );
    assert_eq!(run.exit_code, Some(126));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_directory_that_does_not_exist_fails_to_start_naming_it() {
    if !require_root("a_working_directory_that_does_not_exist_fails_to_start_naming_it") {
        return;
    }
    let mut lab = Lab::new(1);
    let missing = lab.path().join("no-such-dir");
    let mut spec = job("echo should not run");
    spec.cwd = Some(missing.display().to_string());
    let (failed, _) = fails_to_start(&mut lab, spec).await;
    let message = failed
        .booking
        .run
        .and_then(|r| r.message)
        .unwrap_or_default();
    assert!(
        message.contains(&missing.display().to_string()) && message.contains("does not exist"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_signal_that_is_not_a_signal_is_refused_when_booking() {
    if !require_root("an_end_signal_that_is_not_a_signal_is_refused_when_booking") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::new(1);
    lab.start().await;
    let user = lab.connect_as(&jobber).await;
    let start = slot_start(600);
    for bad in ["SIGBOGUS", "15", "SIGSEGV", ""] {
        let mut spec = job("./train.sh");
        spec.end_signal = Some(bad.to_string());
        let e = refused(
            user.conn
                .request(book(&["0"], start, start + secs(60), "bad", Some(spec)))
                .await,
        );
        assert_eq!(e.kind, ErrorKind::Invalid, "{bad:?}: {e:?}");
        assert!(
            e.message.contains(&format!("{bad:?}")) && e.message.contains("SIGUSR1"),
            "the refusal should name the signal and the ones allowed: {}",
            e.message
        );
    }
    let all = user
        .conn
        .list_all(ListRequest {
            include_past: true,
            ..ListRequest::default()
        })
        .await
        .unwrap();
    assert!(all.bookings.is_empty(), "{:?}", all.bookings);
    // A real signal, written loosely, is taken.
    let mut spec = job("./train.sh");
    spec.end_signal = Some("usr1".into());
    let ok = booked(
        user.conn
            .request(book(&["0"], start, start + secs(60), "ok", Some(spec)))
            .await,
    );
    assert_eq!(ok.booking.state, BookingState::Confirmed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_in_personal_mode_refuses_a_job_for_another_user_when_booking() {
    if !require_root("an_agent_in_personal_mode_refuses_a_job_for_another_user_when_booking") {
        return;
    }
    let jobber = ensure_user(JOBBER);
    let mut lab = Lab::personal(2, &jobber);
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let start = slot_start(3);

    // Root, on the jobber's own agent: a job would run as someone else.
    let root = lab.root().await;
    let e = refused(
        root.request(book(
            &["0"],
            start,
            start + secs(60),
            "root's job",
            Some(job("id")),
        ))
        .await,
    );
    assert_eq!(e.kind, ErrorKind::NotAllowed, "{e:?}");
    assert!(e.message.contains("personal mode"), "{}", e.message);
    // Without a job the booking is fine: it is the job that is refused.
    booked(
        root.request(book(&["1"], start, start + secs(60), "no job", None))
            .await,
    );

    // The agent's own user may book a job, and it runs as them.
    let out = lab.out_dir("out", &jobber);
    let user = lab.connect_as(&jobber).await;
    let b = booked(
        user.conn
            .request(book(
                &["0"],
                start,
                start + secs(60),
                "own job",
                Some(job(&format!("id -u > {}/uid", out.display()))),
            ))
            .await,
    )
    .booking;
    let finished = events
        .wait_for(b.id, EventKind::JobFinished, DEADLINE)
        .await;
    assert_eq!(finished.booking.run.and_then(|r| r.exit_code), Some(0));
    let uid = std::fs::read_to_string(out.join("uid")).unwrap();
    assert_eq!(uid.trim(), jobber.uid.to_string());
}
