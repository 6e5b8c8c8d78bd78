//! The GPU watch end to end on simulated GPUs, through the real agent binary: processes are
//! put on the GPUs with the documented `sim-processes.json` file; alice's booking (seeded,
//! since the tests' own user owns whatever they book over the socket) is active on GPU 0.
//! Someone else's process is announced once, hers never; the policy's "stop" stops a real
//! process where the agent runs as root; an idle booking is announced, and released when the
//! policy says so, and a queued request then moves up.

mod common;
mod watch_support;

use chrono::{Duration as ChronoDuration, Utc};
use common::{booked, sim_uuid, DEADLINE, SERVER};
use gpubook_agent::gpu::sim::{SimReader, SIM_PROCESSES_FILE};
use gpubook_agent::gpu::GpuReader;
use gpubook_core::time::whole_seconds;
use gpubook_core::{BookingId, BookingState, Note};
use gpubook_proto::{BookRequest, EventKind, GpuChoice, Request, WhenChoice};
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;
use watch_support::{seed_booking, Agent, Seen};

const GIB: u64 = 1 << 30;

/// A directory for an agent over `gpus` simulated GPUs, with alice's booking of GPU 0 from a
/// minute ago for two hours, and `policy` as its policy file (when given).
fn alice_on_gpu0(gpus: u32, policy: Option<&str>) -> (TempDir, BookingId) {
    let dir = tempfile::tempdir().unwrap();
    let start = whole_seconds(Utc::now()) - ChronoDuration::minutes(1);
    let id = seed_booking(
        &Agent::state_dir_in(&dir),
        SimReader::new(gpus, SERVER).inventory(),
        "alice",
        vec![sim_uuid(0)],
        start,
        start + ChronoDuration::hours(2),
    );
    if let Some(p) = policy {
        std::fs::write(dir.path().join("policy.toml"), p).unwrap();
    }
    (dir, id)
}

/// The agent over one simulated GPU, sampled every 0.2 s, under `dir`'s policy.toml.
async fn one_gpu_under_policy(dir: TempDir) -> Agent {
    let policy = dir.path().join("policy.toml");
    let policy = policy.to_str().unwrap().to_string();
    let args = [
        "--gpus",
        "sim:1",
        "--sample-secs",
        "0.2",
        "--policy",
        &policy,
    ];
    Agent::start(dir, &args).await
}

/// Replaces the processes file at `path` whole, as its documentation asks.
fn put_processes(path: &Path, json: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn intruder(e: &gpubook_proto::Event) -> (u32, Option<String>, u64, bool) {
    match &e.note {
        Some(Note::Intruder {
            gpu,
            pid,
            user,
            used_bytes,
            stopped,
        }) => {
            assert_eq!(*gpu, sim_uuid(0), "{e:?}");
            (*pid, user.clone(), *used_bytes, *stopped)
        }
        other => panic!("an intruder event without its note: {other:?}"),
    }
}

#[tokio::test]
async fn someone_elses_process_is_announced_once_and_the_owners_never() {
    let (dir, id) = alice_on_gpu0(2, None);
    let agent = Agent::start(dir, &["--gpus", "sim:2", "--sample-secs", "0.2"]).await;
    let file = agent.state_dir().join(SIM_PROCESSES_FILE);
    let mut seen = Seen::subscribe(&agent).await;
    // Mallory on alice's GPU, alice herself, and mallory on GPU 1, which nobody booked.
    put_processes(
        &file,
        r#"[{"gpu": 0, "pid": 4242, "user": "mallory", "used_bytes": 1073741824, "util": 80},
            {"gpu": 0, "pid": 5151, "user": "alice", "used_bytes": 2147483648, "util": 10},
            {"gpu": 1, "pid": 4343, "user": "mallory", "used_bytes": 1073741824}]"#,
    );
    seen.until("mallory's intruder event", DEADLINE, |s| {
        !s.of(EventKind::Intruder, id).is_empty()
    })
    .await;
    let first = seen.of(EventKind::Intruder, id)[0].clone();
    assert_eq!(intruder(&first), (4242, Some("mallory".into()), GIB, false));
    assert_eq!(first.booking.owner, "alice");

    // A reading is published only after the watch has seen it: ten more with mallory's
    // process prove that it was not announced again, and that alice's never was.
    let gpu0 = sim_uuid(0);
    let then = seen.readings_with(&gpu0, 4242);
    seen.until("ten more readings", DEADLINE, |s| {
        s.readings_with(&gpu0, 4242) >= then + 10
    })
    .await;
    let intruders: Vec<_> = seen
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Intruder)
        .collect();
    assert_eq!(intruders.len(), 1, "{intruders:#?}");

    // A process whose user is unknown is an intruder too.
    put_processes(
        &file,
        r#"[{"gpu": 0, "pid": 4242, "user": "mallory", "used_bytes": 1073741824},
            {"gpu": 0, "pid": 6000, "used_bytes": 4096}]"#,
    );
    seen.until("the unknown user's intruder event", DEADLINE, |s| {
        s.of(EventKind::Intruder, id).len() >= 2
    })
    .await;
    let second = seen.of(EventKind::Intruder, id)[1].clone();
    assert_eq!(intruder(&second), (6000, None, 4096, false));
    let then = seen.readings_with(&gpu0, 6000);
    seen.until("ten more readings", DEADLINE, |s| {
        s.readings_with(&gpu0, 6000) >= then + 10
    })
    .await;
    assert_eq!(
        seen.of(EventKind::Intruder, id).len(),
        2,
        "{:#?}",
        seen.events
    );
}

#[tokio::test]
async fn the_stop_policy_stops_an_intruder_when_the_agent_runs_as_root() {
    let (dir, id) = alice_on_gpu0(1, Some("intruders = \"stop\"\n"));
    let policy = dir.path().join("policy.toml");
    let file = dir.path().join("elsewhere.json");
    let agent = Agent::start(
        dir,
        &[
            "--gpus",
            "sim:1",
            "--sample-secs",
            "0.2",
            "--policy",
            policy.to_str().unwrap(),
            "--sim-processes",
            file.to_str().unwrap(),
        ],
    )
    .await;
    let mut seen = Seen::subscribe(&agent).await;
    let mut victim = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    put_processes(
        &file,
        &format!(
            r#"[{{"gpu": 0, "pid": {}, "user": "mallory", "used_bytes": 1024}}]"#,
            victim.id()
        ),
    );
    seen.until("the intruder event", DEADLINE, |s| {
        !s.of(EventKind::Intruder, id).is_empty()
    })
    .await;
    let e = seen.of(EventKind::Intruder, id)[0].clone();
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let (pid, _, _, stopped) = intruder(&e);
    assert_eq!(pid, victim.id());
    assert_eq!(stopped, root, "stopped only in system mode (as root)");
    if root {
        use std::os::unix::process::ExitStatusExt;
        let status = victim.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
        assert!(agent.log().contains("sent SIGTERM"), "{}", agent.log());
    } else {
        assert!(victim.try_wait().unwrap().is_none(), "not ours to stop");
        victim.kill().unwrap();
        victim.wait().unwrap();
    }
}

#[tokio::test]
async fn an_idle_booking_is_announced_and_left_alone_by_default() {
    let (dir, id) = alice_on_gpu0(1, Some("idle_after = \"1s\"\n"));
    // No process from the start: without the file the GPUs would show made-up load.
    put_processes(&Agent::state_dir_in(&dir).join(SIM_PROCESSES_FILE), "[]");
    let agent = one_gpu_under_policy(dir).await;
    let mut seen = Seen::subscribe(&agent).await;
    seen.until("the idle event", DEADLINE, |s| {
        !s.of(EventKind::Idle, id).is_empty()
    })
    .await;
    let idle = seen.of(EventKind::Idle, id)[0].clone();
    match idle.note {
        Some(Note::Idle {
            idle_secs,
            released,
        }) => {
            assert!(idle_secs >= 1, "{idle_secs}");
            assert!(!released, "release_idle is off by default");
        }
        ref other => panic!("{other:?}"),
    }
    assert_eq!(idle.booking.state, BookingState::Active);
    let then = seen.readings.len();
    seen.until("ten more readings", DEADLINE, |s| {
        s.readings.len() >= then + 10
    })
    .await;
    assert_eq!(
        seen.of(EventKind::Idle, id).len(),
        1,
        "once per idle stretch"
    );
    assert!(seen.of(EventKind::BookingReleased, id).is_empty());
}

#[tokio::test]
async fn an_idle_booking_is_released_by_policy_and_the_queue_moves_up() {
    let (dir, id) = alice_on_gpu0(1, Some("idle_after = \"2s\"\nrelease_idle = true\n"));
    let file = Agent::state_dir_in(&dir).join(SIM_PROCESSES_FILE);
    put_processes(
        &file,
        r#"[{"gpu": 0, "pid": 5151, "user": "alice", "used_bytes": 2147483648, "util": 50}]"#,
    );
    let agent = one_gpu_under_policy(dir).await;
    let mut seen = Seen::subscribe(&agent).await;
    let conn = agent.connect().await;
    // The test's user asks for GPU 0 for 15 minutes, as soon as possible: after alice.
    let queued = booked(
        conn.request(Request::Book(BookRequest {
            gpus: GpuChoice::Named {
                gpus: vec!["0".into()],
            },
            when: WhenChoice::Asap { duration_secs: 900 },
            title: "queued".into(),
            job: None,
        }))
        .await,
    )
    .booking;
    seen.until("alice's booking", DEADLINE, |s| {
        !s.of(EventKind::BookingCreated, id).is_empty()
    })
    .await;
    let alice = seen.of(EventKind::BookingCreated, id)[0].booking.clone();
    assert_eq!(
        queued.interval.start, alice.interval.end,
        "queued after alice"
    );

    // Alice's process runs for two seconds or more, then goes.
    let gpu0 = sim_uuid(0);
    seen.until("ten readings with alice's process", DEADLINE, |s| {
        s.readings_with(&gpu0, 5151) >= 10
    })
    .await;
    put_processes(&file, "[]");
    let gone = std::time::Instant::now();
    seen.until("the release and the queue moving up", DEADLINE, |s| {
        !s.of(EventKind::BookingMovedEarlier, queued.id).is_empty()
            && !s.of(EventKind::UsageRecorded, id).is_empty()
    })
    .await;
    // Idle counts from the last reading with the process, at most one interval before.
    assert!(
        gone.elapsed() >= Duration::from_millis(1500),
        "not before idle_after"
    );

    let idle = seen.of(EventKind::Idle, id);
    assert_eq!(idle.len(), 1, "{:#?}", seen.events);
    match idle[0].note {
        Some(Note::Idle {
            idle_secs,
            released,
        }) => assert!(idle_secs >= 2 && released, "{:?}", idle[0].note),
        ref other => panic!("{other:?}"),
    }
    let released = seen.of(EventKind::BookingReleased, id);
    assert_eq!(released.len(), 1);
    let ended = released[0].booking.clone();
    assert_eq!(ended.state, BookingState::Ended);
    assert!(idle[0].seq < released[0].seq, "announced, then released");
    let moved = seen.of(EventKind::BookingMovedEarlier, queued.id)[0]
        .booking
        .clone();
    assert_eq!(
        moved.interval.start, ended.interval.end,
        "moved up to the release"
    );
    assert!(moved.interval.start < queued.interval.start);

    // Alice's usage: her process's memory, used while it ran, the booked time as released.
    let usage = seen.of(EventKind::UsageRecorded, id)[0]
        .booking
        .usage
        .expect("usage");
    assert_eq!(usage.peak_memory, 2 * GIB);
    assert!(usage.gpu_seconds_used >= 2, "{usage:?}");
    assert!(usage.mean_util > 0.0 && usage.mean_util < 50.0, "{usage:?}");
    assert_eq!(
        usage.gpu_seconds_booked,
        (ended.interval.end - ended.interval.start).num_seconds()
    );
    assert!(usage.samples >= 20, "{usage:?}");
}

#[tokio::test]
async fn memory_held_at_no_load_is_announced_once_through_the_real_agent() {
    let (dir, id) = alice_on_gpu0(1, Some("idle_held_after = \"1s\"\n"));
    // Alice's process holds 8 GiB and does nothing.
    put_processes(
        &Agent::state_dir_in(&dir).join(SIM_PROCESSES_FILE),
        r#"[{"gpu": 0, "pid": 4242, "user": "alice", "used_bytes": 8589934592, "util": 0}]"#,
    );
    let agent = one_gpu_under_policy(dir).await;
    let mut seen = Seen::subscribe(&agent).await;
    seen.until("the idle-held event", DEADLINE, |s| {
        !s.of(EventKind::IdleHeld, id).is_empty()
    })
    .await;
    let held = seen.of(EventKind::IdleHeld, id)[0].clone();
    match held.note {
        Some(Note::IdleHeld {
            ref gpu,
            memory_bytes,
            util_pct,
            held_secs,
            released,
        }) => {
            assert_eq!(*gpu, sim_uuid(0));
            assert_eq!((memory_bytes, util_pct), (8 * GIB, 0));
            assert!(held_secs >= 1, "{held_secs}");
            assert!(!released, "release_idle_held is off by default");
        }
        ref other => panic!("{other:?}"),
    }
    let then = seen.readings.len();
    seen.until("ten more readings", DEADLINE, |s| {
        s.readings.len() >= then + 10
    })
    .await;
    assert_eq!(
        seen.of(EventKind::IdleHeld, id).len(),
        1,
        "once per stretch"
    );
    assert!(
        seen.of(EventKind::Idle, id).is_empty(),
        "a process is there"
    );
    assert_eq!(held.booking.state, BookingState::Active);
}
