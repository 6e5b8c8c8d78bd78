//! The GPU watch end to end on the 150 s recorded on a real H200
//! (tests/fixtures/nvml/h200/nvml-trace.jsonl), played ten times faster by the real agent
//! binary: alice trains on the GPU, root puts a second, 31.5 GB process on it for a while.
//! With alice's booking over the whole trace, exactly one intruder event names root's
//! process, and the usage recorded at the end of her slot matches the trace, whose figures
//! this test computes from the file itself.

mod common;
mod watch_support;

use chrono::{Duration as ChronoDuration, Utc};
use common::SERVER;
use gpubook_agent::gpu::replay::ReplayReader;
use gpubook_agent::gpu::GpuReader;
use gpubook_core::time::whole_seconds;
use gpubook_core::{GpuUuid, Note};
use gpubook_proto::{EventKind, ListRequest};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;
use watch_support::{seed_booking, Agent, Seen};

const TRACE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/nvml/h200/nvml-trace.jsonl"
);

/// How much faster than recorded the agent plays the trace.
const SPEED: f64 = 10.0;
/// Seconds between the agent's readings: one per recorded second at that speed.
const SAMPLE_SECS: &str = "0.1";

/// One recorded second of the trace's GPU, read straight from the file.
struct Frame {
    /// Seconds since the first.
    offset: f64,
    util: u32,
    memory_used: u64,
    /// (pid, user, used_bytes) of each compute process.
    processes: Vec<(u32, Option<String>, u64)>,
}

/// The trace's GPU and its frames, parsed here without the agent's reader.
fn trace() -> (GpuUuid, Vec<Frame>) {
    let text = std::fs::read_to_string(TRACE).expect("the H200 trace");
    let mut uuid = None;
    let mut t0 = None;
    let frames = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let t = v["t"].as_f64().unwrap();
            let g = &v["sample"]["gpus"][0];
            uuid.get_or_insert_with(|| GpuUuid(g["uuid"].as_str().unwrap().into()));
            Frame {
                offset: t - *t0.get_or_insert(t),
                util: g["util_gpu"].as_u64().unwrap() as u32,
                memory_used: g["memory_used"].as_u64().unwrap(),
                processes: g["processes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p["pid"].as_u64().unwrap() as u32,
                            p["user"].as_str().map(str::to_string),
                            p["used_bytes"].as_u64().unwrap(),
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    (uuid.unwrap(), frames)
}

#[tokio::test]
async fn alices_booking_over_the_h200_trace_sees_one_intruder_and_her_usage() {
    let (gpu, frames) = trace();
    let pass = frames.last().unwrap().offset + 1.0;
    // What the scene holds, from the file: alice trains, root intrudes, both end before the
    // trace does, and the trace starts idle.
    let busy: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.util > 0 || !f.processes.is_empty())
        .collect();
    let busy_from = busy.first().unwrap().offset;
    let busy_until = busy.last().unwrap().offset + 1.0;
    assert!(
        busy_from > 20.0 && busy_until < pass - 10.0,
        "{busy_from}..{busy_until}"
    );
    let root_pids: BTreeSet<u32> = frames
        .iter()
        .flat_map(|f| &f.processes)
        .filter(|(_, user, _)| user.as_deref() == Some("root"))
        .map(|(pid, _, _)| *pid)
        .collect();
    assert_eq!(root_pids.len(), 1, "the trace has one root process");
    let root_pid = *root_pids.first().unwrap();
    let root_bytes = frames
        .iter()
        .flat_map(|f| &f.processes)
        .find(|(pid, _, _)| *pid == root_pid)
        .unwrap()
        .2;
    let util_sum: f64 = frames.iter().map(|f| f64::from(f.util)).sum();
    let peak_memory = frames.iter().map(|f| f.memory_used).max().unwrap();
    // Each recorded second is 1/SPEED s of the replay.
    let used_secs = busy.len() as f64 / SPEED;

    // Alice's slot: from a second ago to 17 s from now. At 10× the busy part (26 s..137 s of
    // the trace) plays 2.6 s..13.7 s after the agent opens it, and the next pass is idle until
    // 15.1 s + 2.6 s: the slot covers all of the one and none of the other.
    let dir = tempfile::tempdir().unwrap();
    let inventory = ReplayReader::open(Path::new(TRACE), SERVER)
        .unwrap()
        .inventory();
    assert_eq!(inventory[0].uuid, gpu);
    let now = whole_seconds(Utc::now());
    let (start, end) = (
        now - ChronoDuration::seconds(1),
        now + ChronoDuration::seconds(17),
    );
    let id = seed_booking(
        &Agent::state_dir_in(&dir),
        inventory,
        "alice",
        vec![gpu.clone()],
        start,
        end,
    );
    let end_at = Instant::now() + (end - Utc::now()).to_std().unwrap();
    let agent = Agent::start(
        dir,
        &[
            "--gpus",
            &format!("replay:{TRACE}"),
            "--replay-speed",
            &SPEED.to_string(),
            "--sample-secs",
            SAMPLE_SECS,
        ],
    )
    .await;
    // The replay starts when the agent opens it: between these two instants.
    let (slot_after_latest, slot_after_earliest) = (
        (end_at - agent.ready).as_secs_f64(),
        (end_at - agent.spawned).as_secs_f64(),
    );
    assert!(
        slot_after_latest * SPEED > busy_until + 1.0
            && slot_after_earliest * SPEED < pass + busy_from - 1.0,
        "the agent took {:?} to start: the slot no longer covers the trace's busy part once",
        agent.ready - agent.spawned
    );

    let mut seen = Seen::subscribe(&agent).await;
    let limit = end_at.saturating_duration_since(Instant::now()) + common::DEADLINE;
    seen.until("alice's usage at the end of her slot", limit, |s| {
        !s.of(EventKind::UsageRecorded, id).is_empty()
    })
    .await;

    // Exactly one intruder event, naming root's process; alice's own is not one.
    let intruders: Vec<_> = seen
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Intruder)
        .collect();
    assert_eq!(intruders.len(), 1, "{intruders:#?}");
    assert_eq!(intruders[0].booking.id, id);
    assert_eq!(
        intruders[0].note,
        Some(Note::Intruder {
            gpu: gpu.clone(),
            pid: root_pid,
            user: Some("root".into()),
            used_bytes: root_bytes,
            // A replay's pids belong to another machine: never signalled.
            stopped: false,
        })
    );
    assert_eq!(seen.of(EventKind::SlotEnded, id).len(), 1);

    let usage = seen.of(EventKind::UsageRecorded, id)[0]
        .booking
        .usage
        .expect("the usage in the event's booking");
    eprintln!("usage: {usage:?}; trace: util sum {util_sum}, busy {used_secs} s at 10×");
    assert_eq!(
        usage.peak_memory, peak_memory,
        "alice's and root's memory at once"
    );
    assert_eq!(usage.gpu_seconds_booked, (end - start).num_seconds());
    assert!(
        (usage.gpu_seconds_used as f64 - used_secs).abs() <= 1.0,
        "used {} s, the trace is busy for {used_secs} s at 10×",
        usage.gpu_seconds_used
    );
    // The mean over the time the slot was watched: the trace's utilisation over the replayed
    // seconds (the idle rest of the pass, and the idle start of the next, included); give or
    // take 3 % for where the readings fell.
    let lo = util_sum / (slot_after_earliest * SPEED + 2.0) * 0.97;
    let hi = util_sum / (slot_after_latest * SPEED - 2.0) * 1.03;
    assert!(
        (lo..=hi).contains(&usage.mean_util),
        "mean utilisation {} not in {lo:.1}..{hi:.1}",
        usage.mean_util
    );
    let expected_samples = slot_after_earliest / SAMPLE_SECS.parse::<f64>().unwrap();
    assert!(
        usage.samples as f64 >= expected_samples * 0.5
            && usage.samples as f64 <= expected_samples * 1.1,
        "{} readings for about {expected_samples:.0}",
        usage.samples
    );

    // The booking itself carries it too.
    let conn = agent.connect().await;
    let stored = conn
        .list_all(ListRequest {
            include_past: true,
            ..ListRequest::default()
        })
        .await
        .unwrap()
        .bookings
        .into_iter()
        .find(|b| b.id == id)
        .unwrap();
    assert_eq!(stored.usage, Some(usage));
    assert_eq!(stored.owner, "alice");
}

#[test]
fn a_replay_speed_that_is_not_a_speed_is_refused() {
    for bad in ["0", "-3", "5000", "fast"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
            .args([
                "serve",
                "--gpus",
                &format!("replay:{TRACE}"),
                &format!("--replay-speed={bad}"),
            ])
            .args(["--state-dir", "/nonexistent/never-created"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "--replay-speed {bad} was taken");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--replay-speed"), "{bad}: {err}");
    }
}
