//! The cgroup kill path: where the host delegates cgroup v2 to the agent, each job runs in its
//! own cgroup and the slot's end kills everything in it through `cgroup.kill`. Shown with a
//! child that escapes every other way the agent finds a job's processes: it calls `setsid`
//! (a new session and process group, out of reach of the signal to the job's group) and
//! drops `GPUBOOK_JOB_KEY` from its environment (so the scan for the key misses it). Only the
//! cgroup still holds it.
//!
//! Needs root (see `jobs_support`) and a host that delegates cgroup v2. Where the host does
//! not, the test says so and passes, or fails under `GPUBOOK_REQUIRE_CGROUP_V2=1` (the
//! testkit's rule): a host property, not something root or a script provides.

mod jobs_support;

use gpubook_proto::EventKind;
use jobs_support::{gone, group_of, require_root, running_script, session_of, Events, DEADLINE};

/// A job whose child leaves its session and drops its key, then says where it is.
const ESCAPE: &str = r#"#!/bin/bash
out="$1"
env -u GPUBOOK_JOB_KEY setsid sh -c 'echo $$ > "$1/escaped"; exec sleep 1000' sh "$out" &
while [ ! -s "$out/escaped" ]; do sleep 0.05; done
touch "$out/ready"
sleep 1000 &
wait $!
"#;

/// Kills process `pid` on drop: the escaped child must not outlive a failed test (nothing
/// else of the agent's would find it).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !gone(self.0) {
            jobs_support::kill(self.0 as i32, libc::SIGKILL);
        }
    }
}

/// The cgroup v2 path of `pid` (`0::` line of /proc/PID/cgroup), if it runs.
fn cgroup_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_left_the_group_and_dropped_the_key_is_killed_through_the_cgroup() {
    let test = "a_child_that_left_the_group_and_dropped_the_key_is_killed_through_the_cgroup";
    if !require_root(test) || !gpubook_testkit::require_cgroup_v2(test) {
        return;
    }
    let (lab, b, out, pid) = running_script(ESCAPE, 6, 1).await;
    let escaped: u32 = std::fs::read_to_string(out.join("escaped"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _reap = KillOnDrop(escaped);
    // It did escape: another session and group, no key; and it is in the job's cgroup.
    assert!(!gone(escaped), "the escaped child is not running");
    assert_ne!(
        session_of(escaped),
        session_of(pid),
        "still in the job's session"
    );
    assert_ne!(
        group_of(escaped),
        group_of(pid),
        "still in the job's process group"
    );
    assert_eq!(
        jobs_support::job_key_of(escaped),
        None,
        "it still carries the key"
    );
    let job_cgroup = cgroup_of(pid).unwrap_or_default();
    assert!(
        job_cgroup.contains("gpubook-job-"),
        "the job is not in a cgroup of its own: {job_cgroup:?}"
    );
    assert_eq!(cgroup_of(escaped), Some(job_cgroup.clone()));

    // The slot's end: the job is stopped, and the escaped child with it.
    let mut events = Events::subscribe(&lab).await;
    events.wait_for(b.id, EventKind::JobStopped, DEADLINE).await;
    gpubook_testkit::wait_until_within("the escaped child to be killed", DEADLINE, || {
        gone(escaped)
    })
    .await;
    assert!(gone(pid), "the job itself still runs");
}
