//! The GPU watch's rules on made-up readings and an injected clock, without a sampler: the
//! hour of history, the usage figures a booking gets when it ends, one intruder event per
//! process and booking, idleness once per stretch, releasing an idle booking (and the queue
//! moving up), and stopping an intruder.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use gpubook_agent::clock::ManualClock;
use gpubook_agent::gpu::sim::SimReader;
use gpubook_agent::gpu::GpuReader;
use gpubook_agent::state::State;
use gpubook_agent::store::Store;
use gpubook_agent::watch::{Watch, HISTORY};
use gpubook_core::policy::IntruderPolicy;
use gpubook_core::{
    Actor, Booking, BookingId, BookingState, GpuSelection, GpuUuid, Interval, Note, Op, Policy,
    Role, When,
};
use gpubook_proto::{Event, EventKind, GpuProcess, GpuReading, Readings};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

const GIB: u64 = 1 << 30;

/// 10:00 on a Monday, on the policy's grid.
fn t0() -> DateTime<Utc> {
    "2030-01-07T10:00:00Z".parse().unwrap()
}

fn secs(s: i64) -> DateTime<Utc> {
    t0() + ChronoDuration::seconds(s)
}

fn uuid(i: u32) -> GpuUuid {
    GpuUuid(format!("SIM-lab-{i}"))
}

fn person(user: &str) -> Actor {
    Actor {
        user: user.into(),
        role: Role::User,
    }
}

/// A state over two simulated GPUs with its clock at 10:00, and a watch over it.
struct Bench {
    /// Holds the store.
    _dir: TempDir,
    clock: Arc<ManualClock>,
    state: Arc<State>,
    watch: Watch,
}

impl Bench {
    fn new(policy: Policy, may_stop: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agent.db")).unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let gpus = SimReader::new(2, "lab").inventory();
        let state = Arc::new(State::load(store, gpus, policy, clock.clone()).unwrap());
        let watch = Watch::new(state.clone(), Duration::from_secs(1), may_stop);
        Self {
            _dir: dir,
            clock,
            state,
            watch,
        }
    }

    /// `owner`'s booking of GPU 0 from 10:00 for `hours`, started.
    fn active_booking(&self, owner: &str, hours: i64) -> BookingId {
        let op = Op::Book {
            gpus: GpuSelection::Named(vec![uuid(0)]),
            when: When::At(Interval {
                start: t0(),
                end: t0() + ChronoDuration::hours(hours),
            }),
            title: "training".into(),
            job: None,
        };
        let id = self.state.change(&person(owner), op).unwrap()[0].booking.id;
        self.state.tick().unwrap();
        assert_eq!(self.booking(id).state, BookingState::Active);
        id
    }

    fn booking(&self, id: BookingId) -> Booking {
        self.state.lock().plan.get(id).unwrap().clone()
    }

    /// One reading at `at`: GPU 0 with `util` and `procs` (memory: the sum of theirs), GPU 1
    /// idle.
    fn read(&self, at: DateTime<Utc>, util: u32, procs: &[(u32, Option<&str>, u64)]) -> Vec<Event> {
        let processes: Vec<GpuProcess> = procs
            .iter()
            .map(|(pid, user, used_bytes)| GpuProcess {
                pid: *pid,
                user: user.map(str::to_string),
                used_bytes: *used_bytes,
            })
            .collect();
        let memory = processes.iter().map(|p| p.used_bytes).sum();
        self.watch.observe(&Readings {
            at,
            gpus: vec![gpu(0, util, memory, processes), gpu(1, 0, 0, Vec::new())],
        })
    }
}

fn gpu(i: u32, util: u32, memory_used: u64, processes: Vec<GpuProcess>) -> GpuReading {
    GpuReading {
        uuid: uuid(i),
        index: i,
        name: format!("Simulated GPU {i}"),
        memory_used,
        memory_total: 80 * GIB,
        util_gpu: util,
        util_mem: 0,
        temperature_c: 40,
        power_mw: 100_000,
        power_limit_mw: 400_000,
        processes,
        fault: None,
        allocated: None,
    }
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

#[test]
fn history_keeps_the_last_hour_per_gpu() {
    let b = Bench::new(Policy::default(), false);
    // Two hours of readings, one every 10 s; GPU 0's utilisation counts the minutes.
    for i in 0..=720 {
        b.read(secs(i * 10), (i / 6 % 100) as u32, &[]);
    }
    let h = b.watch.history(&uuid(0));
    let last = secs(7200);
    assert_eq!(h.last().unwrap().at, last);
    assert_eq!(h.last().unwrap().util, 20, "minute 120");
    let horizon = last - ChronoDuration::from_std(HISTORY).unwrap();
    assert_eq!(h.first().unwrap().at, horizon, "exactly an hour back");
    assert_eq!(h.len(), 361);
    assert!(h.windows(2).all(|w| w[0].at < w[1].at), "oldest first");
    assert_eq!(b.watch.history(&uuid(1)).len(), 361);
    assert!(b.watch.history(&GpuUuid("GPU-none".into())).is_empty());
}

#[test]
fn usage_is_recorded_in_the_booking_when_its_slot_ends() {
    let b = Bench::new(Policy::default(), false);
    let id = b.active_booking("alice", 1);
    // 10 s at 100 % with alice's 5 GiB process, then 10 s idle; one reading a second.
    for s in 0..10 {
        assert!(b
            .read(secs(s), 100, &[(77, Some("alice"), 5 * GIB)])
            .is_empty());
    }
    for s in 10..20 {
        assert!(b.read(secs(s), 0, &[]).is_empty());
    }
    assert!(
        b.watch.sweep().is_empty(),
        "still active: nothing to record"
    );
    assert_eq!(b.booking(id).usage, None);

    b.clock.set(t0() + ChronoDuration::hours(1));
    let ended = b.state.tick().unwrap();
    assert_eq!(kinds(&ended), vec![EventKind::SlotEnded]);
    let recorded = b.watch.sweep();
    assert_eq!(kinds(&recorded), vec![EventKind::UsageRecorded]);
    let usage = recorded[0]
        .booking
        .usage
        .expect("usage in the event's booking");
    assert_eq!(usage.samples, 20);
    assert_eq!(usage.peak_memory, 5 * GIB);
    assert_eq!(usage.gpu_seconds_used, 10);
    assert_eq!(usage.gpu_seconds_booked, 3600, "1 GPU × 1 h");
    assert!((usage.mean_util - 50.0).abs() < 1e-9, "{usage:?}");
    assert_eq!(
        b.booking(id).usage,
        Some(usage),
        "and in the stored booking"
    );
    assert!(b.watch.sweep().is_empty(), "recorded once");
    // Readings after the end do not start it again.
    b.read(secs(3601), 100, &[(77, Some("alice"), GIB)]);
    assert!(b.watch.sweep().is_empty());
}

#[test]
fn a_reading_stands_for_the_time_since_the_last_one_up_to_a_limit() {
    let b = Bench::new(Policy::default(), false);
    let id = b.active_booking("alice", 1);
    // 1 s, then a 2 s gap, then a 60 s stall (counted as max_step: 3 s).
    b.read(secs(0), 100, &[(1, Some("alice"), GIB)]);
    b.read(secs(2), 100, &[(1, Some("alice"), GIB)]);
    b.read(secs(62), 0, &[]);
    assert_eq!(b.watch.max_step(), Duration::from_secs(3));
    b.state
        .change(&person("alice"), Op::Release { id })
        .unwrap();
    let usage = b.watch.sweep()[0].booking.usage.unwrap();
    assert_eq!(
        usage.gpu_seconds_used, 3,
        "1 s + 2 s; the idle stall is not used"
    );
    // Weighted: (100×1 + 100×2 + 0×3) / 6.
    assert!((usage.mean_util - 50.0).abs() < 1e-9, "{usage:?}");
    assert_eq!(usage.samples, 3);
}

#[test]
fn each_intruding_process_is_announced_once_per_booking() {
    let b = Bench::new(Policy::default(), true);
    let id = b.active_booking("alice", 1);
    let procs = [
        (10, Some("alice"), GIB),
        (11, Some("mallory"), 2 * GIB),
        (12, None, 3 * GIB),
        (13, Some("root"), 4 * GIB),
    ];
    let first = b.read(secs(0), 90, &procs);
    assert_eq!(kinds(&first), vec![EventKind::Intruder; 3]);
    let notes: Vec<Note> = first.iter().map(|e| e.note.clone().unwrap()).collect();
    let expect = |pid, user: Option<&str>, used_bytes| Note::Intruder {
        gpu: uuid(0),
        pid,
        user: user.map(str::to_string),
        used_bytes,
        // The policy is "warn": nothing is stopped, even where the agent could.
        stopped: false,
    };
    assert_eq!(
        notes,
        vec![
            expect(11, Some("mallory"), 2 * GIB),
            expect(12, None, 3 * GIB),
            expect(13, Some("root"), 4 * GIB),
        ]
    );
    assert!(first.iter().all(|e| e.booking.id == id));
    for s in 1..5 {
        assert!(b.read(secs(s), 90, &procs).is_empty(), "announced once");
    }
    // A new process of the same user is a new intruder.
    let more = b.read(secs(5), 90, &[(14, Some("mallory"), GIB)]);
    assert_eq!(kinds(&more), vec![EventKind::Intruder]);
    assert!(matches!(more[0].note, Some(Note::Intruder { pid: 14, .. })));
}

#[test]
fn a_process_on_a_gpu_nobody_booked_is_nobodys_intruder() {
    let b = Bench::new(Policy::default(), false);
    b.active_booking("alice", 1);
    let events = b.watch.observe(&Readings {
        at: secs(0),
        gpus: vec![
            gpu(0, 0, 0, Vec::new()),
            gpu(
                1,
                50,
                GIB,
                vec![GpuProcess {
                    pid: 5,
                    user: Some("mallory".into()),
                    used_bytes: GIB,
                }],
            ),
        ],
    });
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn stop_sends_sigterm_where_the_agent_may() {
    let policy = Policy {
        intruders: IntruderPolicy::Stop,
        ..Policy::default()
    };
    for may_stop in [true, false] {
        let b = Bench::new(policy.clone(), may_stop);
        b.active_booking("alice", 1);
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap();
        let events = b.read(secs(0), 10, &[(child.id(), Some("mallory"), GIB)]);
        assert_eq!(kinds(&events), vec![EventKind::Intruder]);
        match events[0].note {
            Some(Note::Intruder { stopped, .. }) => assert_eq!(stopped, may_stop),
            ref other => panic!("{other:?}"),
        }
        if may_stop {
            let status = child.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(libc::SIGTERM));
        } else {
            assert!(child.try_wait().unwrap().is_none(), "left running");
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

#[test]
fn stop_never_signals_pid_0_or_1() {
    let policy = Policy {
        intruders: IntruderPolicy::Stop,
        ..Policy::default()
    };
    let b = Bench::new(policy, true);
    b.active_booking("alice", 1);
    // kill(0) would signal the agent's own process group; kill(-1) everything.
    let events = b.read(
        secs(0),
        10,
        &[
            (0, Some("mallory"), GIB),
            (1, Some("root"), GIB),
            (u32::MAX, Some("mallory"), GIB),
            (std::process::id(), Some("mallory"), GIB),
        ],
    );
    assert_eq!(events.len(), 4);
    for e in events {
        assert!(
            matches!(e.note, Some(Note::Intruder { stopped: false, .. })),
            "{e:?}"
        );
    }
}

#[test]
fn idleness_is_announced_once_per_stretch() {
    let policy = Policy {
        idle_after_secs: Some(60),
        ..Policy::default()
    };
    let b = Bench::new(policy, false);
    let id = b.active_booking("alice", 2);
    for s in 0..60 {
        assert!(b.read(secs(s), 0, &[]).is_empty(), "not yet idle at {s} s");
    }
    let idle = b.read(secs(60), 0, &[]);
    assert_eq!(kinds(&idle), vec![EventKind::Idle]);
    assert_eq!(
        idle[0].note,
        Some(Note::Idle {
            idle_secs: 60,
            released: false
        })
    );
    assert_eq!(idle[0].booking.state, BookingState::Active, "not released");
    for s in 61..200 {
        assert!(b.read(secs(s), 0, &[]).is_empty(), "announced once");
    }
    // A process comes and goes: a new stretch starts when it leaves.
    b.read(secs(200), 30, &[(5, Some("alice"), GIB)]);
    for s in 201..260 {
        assert!(b.read(secs(s), 0, &[]).is_empty(), "a new stretch at {s} s");
    }
    assert_eq!(kinds(&b.read(secs(260), 0, &[])), vec![EventKind::Idle]);
    assert_eq!(b.booking(id).state, BookingState::Active);
}

#[test]
fn an_idle_booking_is_released_when_the_policy_says_so_and_the_queue_moves_up() {
    let policy = Policy {
        idle_after_secs: Some(120),
        release_idle: true,
        ..Policy::default()
    };
    let b = Bench::new(policy, false);
    let id = b.active_booking("alice", 2);
    // Bob asks for GPU 0 for an hour, as soon as possible: after alice, at 12:00.
    let asap = b
        .state
        .change(
            &person("bob"),
            Op::Book {
                gpus: GpuSelection::Named(vec![uuid(0)]),
                when: When::Asap(ChronoDuration::hours(1)),
                title: "queued".into(),
                job: None,
            },
        )
        .unwrap()[0]
        .booking
        .clone();
    assert_eq!(asap.interval.start, t0() + ChronoDuration::hours(2));

    b.read(secs(0), 80, &[(5, Some("alice"), GIB)]);
    for s in 1..120 {
        assert!(b.read(secs(s), 0, &[]).is_empty(), "{s}");
    }
    // The state's clock says 10:02 when the agent decides.
    b.clock.set(secs(120));
    let events = b.read(secs(120), 0, &[]);
    assert_eq!(
        kinds(&events),
        vec![
            EventKind::Idle,
            EventKind::BookingReleased,
            EventKind::BookingMovedEarlier
        ]
    );
    assert_eq!(
        events[0].note,
        Some(Note::Idle {
            idle_secs: 120,
            released: true
        })
    );
    let alice = b.booking(id);
    assert_eq!(alice.state, BookingState::Ended);
    assert_eq!(alice.interval.end, secs(120));
    let moved = b.booking(asap.id);
    assert_eq!(moved.interval.start, secs(120), "bob moves up to now");
    assert_eq!(events[2].booking.id, asap.id);

    // Alice's usage is recorded once her booking has ended.
    let recorded = b.watch.sweep();
    assert_eq!(kinds(&recorded), vec![EventKind::UsageRecorded]);
    let usage = b.booking(id).usage.unwrap();
    assert_eq!(usage.gpu_seconds_used, 1);
    assert_eq!(usage.gpu_seconds_booked, 120);
    assert_eq!(usage.peak_memory, GIB);
}

#[test]
fn memory_held_without_work_is_announced_once_per_stretch() {
    let policy = Policy {
        idle_held_after_secs: Some(60),
        idle_held_below_pct: 5,
        ..Policy::default()
    };
    let b = Bench::new(policy, false);
    let id = b.active_booking("alice", 2);
    let holding = [(5, Some("alice"), 8 * GIB)];
    for s in 0..60 {
        assert!(
            b.read(secs(s), (s % 4) as u32, &holding).is_empty(),
            "not yet at {s} s"
        );
    }
    let held = b.read(secs(60), 1, &holding);
    assert_eq!(kinds(&held), vec![EventKind::IdleHeld]);
    assert_eq!(
        held[0].note,
        Some(Note::IdleHeld {
            gpu: uuid(0),
            memory_bytes: 8 * GIB,
            util_pct: 3,
            held_secs: 60,
            released: false,
        })
    );
    for s in 61..200 {
        assert!(b.read(secs(s), 0, &holding).is_empty(), "announced once");
    }
    // Work resumes: a new stretch starts when it stops again.
    b.read(secs(200), 90, &holding);
    for s in 201..260 {
        assert!(
            b.read(secs(s), 0, &holding).is_empty(),
            "a new stretch at {s} s"
        );
    }
    assert_eq!(
        kinds(&b.read(secs(260), 0, &holding)),
        vec![EventKind::IdleHeld]
    );
    // No process at all is plain idleness, not this (and idle_after is off here).
    for s in 261..400 {
        assert!(
            b.read(secs(s), 0, &[]).is_empty(),
            "no process: not held at {s} s"
        );
    }
    assert_eq!(
        b.booking(id).state,
        BookingState::Active,
        "not released by default"
    );
}

#[test]
fn memory_held_without_work_releases_the_booking_when_the_policy_says_so() {
    let policy = Policy {
        idle_held_after_secs: Some(30),
        release_idle_held: true,
        ..Policy::default()
    };
    let b = Bench::new(policy, false);
    let id = b.active_booking("alice", 2);
    let mut all = Vec::new();
    for s in 0..=30 {
        all.extend(b.read(secs(s), 0, &[(5, Some("alice"), GIB)]));
    }
    assert_eq!(
        kinds(&all),
        vec![EventKind::IdleHeld, EventKind::BookingReleased]
    );
    assert!(matches!(
        all[0].note,
        Some(Note::IdleHeld { released: true, .. })
    ));
    assert_eq!(b.booking(id).state, BookingState::Ended);
}
