//! A re-adopted job is no longer the agent's child: when it ends, its new parent (init, or the
//! nearest subreaper) reaps it, in its own time. Until then it is a zombie: dead, though still
//! listed in /proc. A job that exits at once on its end signal must be reported as stopped
//! with that signal, not as killed with SIGKILL after the grace period, however long its
//! zombie lingers (in a container whose init reaps late or never, it lingers).
//!
//! This test process makes itself a child subreaper and reaps nothing, so the re-adopted job
//! becomes its zombie child once it exits: the slowest init there is. Its own binary, because
//! a subreaper is a property of the whole process. Needs root; see `jobs_support`.

mod jobs_support;

use gpubook_core::JobState;
use gpubook_proto::EventKind;
use jobs_support::{gone, require_root, running_job, secs, Events, DEADLINE};

/// The parent of `pid`, if it runs.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readopted_job_that_exits_on_its_signal_is_not_reported_killed_while_its_zombie_lingers()
{
    if !require_root("a_readopted_job_that_exits_on_its_signal_is_not_reported_killed") {
        return;
    }
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "cannot become a child subreaper");
    let grace = 3;
    let (mut lab, b, out, pid) = running_job(8, grace).await;
    let end = b.interval.end;

    lab.kill();
    // The orphaned job is now this process's child, and this process does not reap it.
    assert_eq!(parent_of(pid), Some(std::process::id()));
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;

    let stopped = events.wait_for(b.id, EventKind::JobStopped, DEADLINE).await;
    assert_eq!(
        std::fs::read_to_string(out.join("signal"))
            .unwrap_or_default()
            .trim(),
        "got TERM",
        "the job did not get its end signal"
    );
    assert!(gone(pid), "the job still runs");
    let run = stopped.booking.run.clone().expect("a run");
    // Reap it now, whatever the outcome.
    // SAFETY: waitpid on our own child with a null status pointer.
    unsafe {
        libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG);
    }
    assert_eq!(run.state, JobState::Stopped, "{run:?}");
    let message = run.message.clone().unwrap_or_default();
    let ended = run.ended_at.expect("ended_at");
    println!(
        "stopped {:.3} s after the slot's end: {message}",
        (ended - end).num_milliseconds() as f64 / 1000.0
    );
    assert!(
        message.contains("SIGTERM") && !message.contains("SIGKILL"),
        "the job exited on SIGTERM at once, yet the event says: {message}"
    );
    assert_eq!(run.signal, Some(libc::SIGTERM), "{run:?}");
    assert!(
        ended < end + secs(i64::from(grace)),
        "recorded as stopped at {ended}; the slot ended at {end} and the job exited at once"
    );
}
