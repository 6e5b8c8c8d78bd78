//! Watching the GPUs: every reading is kept for an hour per GPU, added to the usage of the
//! bookings whose slot is on, and checked for intruders and idleness.
//!
//! - History: per GPU, its utilisation and memory in use at each reading of the last
//!   [`HISTORY`] ([`Watch::history`]).
//! - Usage: while a booking is active, each reading adds to its figures; a reading stands for
//!   the time since the one before (at most [`Watch::max_step`], so a stall is not counted). A
//!   GPU is used during that time if it has a compute process or any utilisation. When the
//!   booking ends (its slot ended, or it was released) the summary is written into the
//!   booking as [`Usage`], with a `usage_recorded` event, in one transaction.
//! - On Slurm: the GPUs Slurm gave the booking's job ([`gpubook_core::Booking::used_gpus`]).
//! - Intruders: a compute process on an active booking's GPU whose user is not the booking's
//!   owner (an unknown user and root included) is announced once per process and booking
//!   (`intruder` event). With the policy `intruders = "stop"` an agent running as root also
//!   sends it SIGTERM; replayed readings name processes of another machine and are never
//!   signalled.
//! - Idleness: with the policy's `idle_after`, an active booking whose GPUs have had no
//!   compute process and no utilisation for that long is announced (`idle` event), once per
//!   idle stretch; with `release_idle` it is also released, in the same transaction, and
//!   queued "as soon as possible" requests move earlier.
//!
//! What is tracked lives in memory only: after a restart, a booking that is still active is
//! tracked from the first reading on (its usage then covers that part of the slot).
//!
//! Readings arrive from the sampler ([`Watch::observe`], on a blocking thread, before the
//! reading is published, so a subscriber that sees a reading knows it was watched); the end
//! of a booking arrives from the state's events ([`run`]).

use crate::state::State;
use chrono::{DateTime, Utc};
use gpubook_core::policy::IntruderPolicy;
use gpubook_core::{BookingId, BookingState, ChangeKind, GpuUuid, Interval, Note, Usage};
use gpubook_proto::{Event, EventKind, GpuProcess, GpuReading, Readings};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How far back the per-GPU history reaches.
pub const HISTORY: Duration = Duration::from_secs(3600);

/// Most points kept per GPU, whatever the sampling interval: an hour of readings every 0.1 s.
/// Bounds the memory (about 1 MiB per GPU) when the agent samples faster than that.
pub const HISTORY_MAX_POINTS: usize = 36_000;

/// One reading of one GPU in its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPoint {
    /// When it was read.
    pub at: DateTime<Utc>,
    /// Utilisation of the GPU's cores, percent.
    pub util: u32,
    /// Memory in use, bytes.
    pub memory_used: u64,
}

/// Watches every reading; shared by the sampler (readings) and [`run`] (booking ends).
#[derive(Debug)]
pub struct Watch {
    /// The plan (which bookings are active, the policy) and where events are written.
    state: Arc<State>,
    /// The sampling interval: what the first reading stands for.
    interval: Duration,
    /// Whether this agent may signal the processes it reads (root, real processes).
    may_stop: bool,
    /// History and tracked bookings. A plain mutex: held for bookkeeping only, never across
    /// an `.await` or a write to the store. Taken before the state's lock, never after it.
    inner: Mutex<Inner>,
}

/// What the watch remembers.
#[derive(Debug, Default)]
struct Inner {
    /// Per GPU, its readings of the last hour, oldest first.
    history: HashMap<GpuUuid, VecDeque<HistoryPoint>>,
    /// Active bookings seen so far, with their running figures.
    tracked: HashMap<BookingId, Tracked>,
    /// When the previous reading was taken: what the next one stands for starts there.
    last_at: Option<DateTime<Utc>>,
}

/// A booking being watched.
#[derive(Debug)]
struct Tracked {
    /// Σ utilisation × seconds over its GPUs and readings.
    util_seconds: f64,
    /// Σ seconds over its GPUs and readings: what `util_seconds` is divided by.
    gpu_seconds: f64,
    /// Highest memory in use on any of its GPUs.
    peak_memory: u64,
    /// GPU-seconds with a process or load.
    used_seconds: f64,
    /// Readings counted.
    samples: u64,
    /// Processes already announced as intruders.
    intruders: HashSet<u32>,
    /// Since when its GPUs have had no process and no load.
    idle_since: DateTime<Utc>,
    /// Whether this idle stretch was announced.
    idle_announced: bool,
    /// Since when its GPUs have held memory below the policy's utilisation.
    held_since: DateTime<Utc>,
    /// The highest utilisation seen in that stretch, percent.
    held_peak_util: u32,
    /// Whether this held stretch was announced.
    held_announced: bool,
}

impl Tracked {
    fn new(at: DateTime<Utc>) -> Self {
        Self {
            util_seconds: 0.0,
            gpu_seconds: 0.0,
            peak_memory: 0,
            used_seconds: 0.0,
            samples: 0,
            intruders: HashSet::new(),
            idle_since: at,
            idle_announced: false,
            held_since: at,
            held_peak_util: 0,
            held_announced: false,
        }
    }

    /// The summary; `gpu_seconds_booked` is filled in from the booking when it is written.
    fn usage(&self) -> Usage {
        Usage {
            mean_util: if self.gpu_seconds > 0.0 {
                self.util_seconds / self.gpu_seconds
            } else {
                0.0
            },
            peak_memory: self.peak_memory,
            gpu_seconds_used: self.used_seconds.round() as i64,
            gpu_seconds_booked: 0,
            samples: self.samples,
        }
    }
}

/// An active booking as one reading needs it.
#[derive(Debug)]
struct Active {
    /// Which.
    id: BookingId,
    /// Its owner: their processes are not intruders.
    owner: String,
    /// Its GPUs.
    gpus: Vec<GpuUuid>,
}

/// The policy's watch settings, read once per reading.
#[derive(Debug, Clone, Copy)]
struct Rules {
    /// Warn about intruders or stop them.
    intruders: IntruderPolicy,
    /// After how long without a process a booking is idle.
    idle_after: Option<chrono::Duration>,
    /// Whether an idle booking is released.
    release_idle: bool,
    /// After how long holding memory below `held_below` % a booking is idle but held.
    held_after: Option<chrono::Duration>,
    /// The utilisation, percent, under which a GPU holding memory counts as idle.
    held_below: u32,
    /// Whether a booking idle but held is released.
    release_held: bool,
}

/// Something one reading found, to be written after the watch's lock is let go.
#[derive(Debug)]
enum Finding {
    /// A process that is not the owner's on a booking's GPU.
    Intruder {
        /// The booking.
        id: BookingId,
        /// The GPU.
        gpu: GpuUuid,
        /// The process.
        process: GpuProcess,
    },
    /// A booking idle for `idle_secs`.
    Idle {
        /// The booking.
        id: BookingId,
        /// How long, seconds.
        idle_secs: i64,
    },
    /// A booking whose GPUs held memory while nearly idle for `held_secs`.
    IdleHeld {
        /// The booking.
        id: BookingId,
        /// The GPU holding the most memory, and how much its processes hold.
        gpu: GpuUuid,
        /// See `gpu`.
        memory_bytes: u64,
        /// The highest utilisation over the stretch.
        util_pct: u32,
        /// How long, seconds.
        held_secs: i64,
    },
}

/// Whether an agent reading GPUs from `source` may signal the processes it sees: only as root
/// (system mode), and never for a replay or on Slurm, whose pids belong to other machines
/// (Slurm's node agents' readings; Slurm's own cgroups confine its jobs there).
pub fn may_stop_processes(source: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    !matches!(source, "replay" | "slurm") && unsafe { libc::geteuid() } == 0
}

impl Watch {
    /// A watch over `state`'s bookings, for readings every `interval`; `may_stop` says whether
    /// the policy's "stop" may signal processes here (see [`may_stop_processes`]).
    pub fn new(state: Arc<State>, interval: Duration, may_stop: bool) -> Self {
        Self {
            state,
            interval,
            may_stop,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The longest time one reading stands for: three intervals, and at least two seconds
    /// more than one. A longer gap (a suspended machine, a hung driver) counts this much.
    pub fn max_step(&self) -> Duration {
        (self.interval * 3).max(self.interval + Duration::from_secs(2))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Bookkeeping only: a panic in the middle leaves figures a reading off at worst.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last hour of `gpu`'s readings, oldest first (empty for a GPU never read).
    pub fn history(&self, gpu: &GpuUuid) -> Vec<HistoryPoint> {
        self.lock()
            .history
            .get(gpu)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Takes one reading into account: history, usage, intruders, idleness; writes what it
    /// found (one transaction each) and returns those events. Blocks on the store: call it
    /// from a blocking thread.
    pub fn observe(&self, r: &Readings) -> Vec<Event> {
        // The reading was taken just before: a process that started after this is not one it saw.
        let seen = std::time::SystemTime::now();
        let (found, ended, rules) = {
            let mut inner = self.lock();
            let step = self.step(&mut inner, r.at);
            for g in &r.gpus {
                remember(&mut inner, g, r.at);
            }
            let (active, rules) = self.active();
            let ended = self.take_ended(&mut inner);
            let by_uuid: HashMap<&GpuUuid, &GpuReading> =
                r.gpus.iter().map(|g| (&g.uuid, g)).collect();
            let mut found = Vec::new();
            for b in &active {
                let t = inner
                    .tracked
                    .entry(b.id)
                    .or_insert_with(|| Tracked::new(r.at));
                account(t, b, &by_uuid, r.at, step, rules, &mut found);
            }
            (found, ended, rules)
        };
        let mut written = self.record(ended);
        for f in found {
            let result = match f {
                Finding::Intruder { id, gpu, process } => {
                    let stopped = rules.intruders == IntruderPolicy::Stop
                        && self.may_stop
                        && terminate(process.pid, seen);
                    eprintln!(
                        "gpubook-agent: intruder on booking {id}: pid {} of {} on {}{}",
                        process.pid,
                        process.user.as_deref().unwrap_or("an unknown user"),
                        gpu.0,
                        if stopped { ", sent SIGTERM" } else { "" }
                    );
                    let note = Note::Intruder {
                        gpu,
                        pid: process.pid,
                        user: process.user,
                        used_bytes: process.used_bytes,
                        stopped,
                    };
                    self.state
                        .observe(id, ChangeKind::Intruder, Some(note), |_| {})
                }
                Finding::Idle { id, idle_secs } => {
                    let released = rules.release_idle;
                    let note = Note::Idle {
                        idle_secs,
                        released,
                    };
                    self.announce_idle(id, ChangeKind::Idle, note, released)
                }
                Finding::IdleHeld {
                    id,
                    gpu,
                    memory_bytes,
                    util_pct,
                    held_secs,
                } => {
                    let released = rules.release_held;
                    let note = Note::IdleHeld {
                        gpu,
                        memory_bytes,
                        util_pct,
                        held_secs,
                        released,
                    };
                    self.announce_idle(id, ChangeKind::IdleHeld, note, released)
                }
            };
            match result {
                Ok(events) => written.extend(events),
                Err(e) => eprintln!("gpubook-agent: watching the GPUs: {e}"),
            }
        }
        written
    }

    /// Writes that booking `id` is idle (`kind`: no process, or memory held without work),
    /// and releases it in the same transaction when `release`.
    fn announce_idle(
        &self,
        id: BookingId,
        kind: ChangeKind,
        note: Note,
        release: bool,
    ) -> Result<crate::state::Committed, gpubook_proto::ErrorBody> {
        self.state.decide(|plan, now| {
            // It may have ended since the reading; then there is nothing to say.
            if plan.get(id).is_none_or(|b| b.state != BookingState::Active) {
                return Vec::new();
            }
            let mut changes: Vec<_> = plan
                .observe(id, kind, Some(note), |_| {})
                .into_iter()
                .collect();
            if release {
                changes.extend(plan.release_by_agent(id, now));
            }
            changes
        })
    }

    /// Records the usage of every tracked booking that is no longer active (called when a
    /// slot ends or a booking is released); returns the events written.
    pub fn sweep(&self) -> Vec<Event> {
        let ended = {
            let mut inner = self.lock();
            self.take_ended(&mut inner)
        };
        self.record(ended)
    }

    /// The time reading `at` stands for, and remembers it as the latest.
    fn step(&self, inner: &mut Inner, at: DateTime<Utc>) -> f64 {
        let step = match inner.last_at {
            Some(prev) if at > prev => (at - prev).to_std().unwrap_or(self.interval),
            // The first reading, or the clock went back: one interval.
            _ => self.interval,
        };
        inner.last_at = Some(at);
        step.min(self.max_step()).as_secs_f64()
    }

    /// The bookings active now, with the policy's rules, from one look at the plan.
    fn active(&self) -> (Vec<Active>, Rules) {
        let now = self.state.clock.now();
        let picks_devices = self.state.has_holder();
        let st = self.state.lock();
        let plan = &st.plan;
        let all: Vec<GpuUuid> = plan.gpus().iter().map(|g| g.uuid.clone()).collect();
        let window = Interval {
            start: now,
            end: now + chrono::Duration::seconds(1),
        };
        let active = plan
            .conflicts(&all, &window, None)
            .into_iter()
            .filter_map(|c| plan.get(c.booking))
            .filter(|b| b.state == BookingState::Active)
            .map(|b| Active {
                id: b.id,
                owner: b.owner.clone(),
                gpus: b.used_gpus(picks_devices),
            })
            .filter(|a| !a.gpus.is_empty())
            .collect();
        let p = plan.policy();
        let rules = Rules {
            intruders: p.intruders,
            idle_after: p.idle_after(),
            release_idle: p.release_idle,
            held_after: p.idle_held_after(),
            held_below: p.idle_held_below_pct,
            release_held: p.release_idle_held,
        };
        (active, rules)
    }

    /// Removes the tracked bookings that are no longer active.
    fn take_ended(&self, inner: &mut Inner) -> Vec<(BookingId, Tracked)> {
        let over: Vec<BookingId> = {
            let st = self.state.lock();
            inner
                .tracked
                .keys()
                .filter(|id| {
                    st.plan
                        .get(**id)
                        .is_none_or(|b| b.state != BookingState::Active)
                })
                .copied()
                .collect()
        };
        over.into_iter()
            .filter_map(|id| inner.tracked.remove(&id).map(|t| (id, t)))
            .collect()
    }

    /// Writes the usage of bookings that ended.
    fn record(&self, ended: Vec<(BookingId, Tracked)>) -> Vec<Event> {
        let mut written = Vec::new();
        for (id, t) in ended {
            let mut usage = t.usage();
            let result = self
                .state
                .observe(id, ChangeKind::UsageRecorded, None, move |b| {
                    usage.gpu_seconds_booked =
                        b.gpus.len() as i64 * b.interval.duration().num_seconds();
                    b.usage = Some(usage);
                });
            match result {
                Ok(events) => written.extend(events),
                Err(e) => eprintln!("gpubook-agent: recording the usage of booking {id}: {e}"),
            }
        }
        written
    }
}

/// Adds `g`'s reading at `at` to its history and forgets what is older than an hour.
fn remember(inner: &mut Inner, g: &GpuReading, at: DateTime<Utc>) {
    let h = inner.history.entry(g.uuid.clone()).or_default();
    h.push_back(HistoryPoint {
        at,
        util: g.util_gpu,
        memory_used: g.memory_used,
    });
    let horizon =
        at - chrono::Duration::from_std(HISTORY).unwrap_or_else(|_| chrono::Duration::hours(1));
    while h.len() > HISTORY_MAX_POINTS || h.front().is_some_and(|p| p.at < horizon) {
        h.pop_front();
    }
}

/// Adds one reading (standing for `step` seconds) to booking `b`'s figures and notes what it
/// found: new intruders, and idleness that has lasted long enough.
fn account(
    t: &mut Tracked,
    b: &Active,
    by_uuid: &HashMap<&GpuUuid, &GpuReading>,
    at: DateTime<Utc>,
    step: f64,
    rules: Rules,
    found: &mut Vec<Finding>,
) {
    t.samples += 1;
    let mut busy = false;
    for uuid in &b.gpus {
        let Some(g) = by_uuid.get(uuid) else {
            // Not in this reading (a GPU that fell off the bus): nothing to count.
            continue;
        };
        t.util_seconds += f64::from(g.util_gpu) * step;
        t.gpu_seconds += step;
        t.peak_memory = t.peak_memory.max(g.memory_used);
        if !g.processes.is_empty() || g.util_gpu > 0 {
            t.used_seconds += step;
            busy = true;
        }
        for p in &g.processes {
            if p.user.as_deref() != Some(b.owner.as_str()) && t.intruders.insert(p.pid) {
                found.push(Finding::Intruder {
                    id: b.id,
                    gpu: uuid.clone(),
                    process: p.clone(),
                });
            }
        }
    }
    idle_held(t, b, by_uuid, at, rules, found);
    if busy {
        t.idle_since = at;
        t.idle_announced = false;
    } else if let Some(after) = rules.idle_after {
        let idle = at - t.idle_since;
        if !t.idle_announced && idle >= after {
            t.idle_announced = true;
            found.push(Finding::Idle {
                id: b.id,
                idle_secs: idle.num_seconds(),
            });
        }
    }
}

/// Follows a booking whose GPUs hold memory (a process on them) while every one of them stays
/// under the policy's utilisation: announced once per stretch, after `held_after`.
fn idle_held(
    t: &mut Tracked,
    b: &Active,
    by_uuid: &HashMap<&GpuUuid, &GpuReading>,
    at: DateTime<Utc>,
    rules: Rules,
    found: &mut Vec<Finding>,
) {
    let seen: Vec<&GpuReading> = b
        .gpus
        .iter()
        .filter_map(|u| by_uuid.get(u).copied())
        .collect();
    let held = |g: &GpuReading| g.processes.iter().map(|p| p.used_bytes).sum::<u64>();
    let holder = seen
        .iter()
        .filter(|g| !g.processes.is_empty())
        .max_by_key(|g| held(g));
    let util = seen.iter().map(|g| g.util_gpu).max().unwrap_or(0);
    let holding = rules
        .held_after
        .zip(holder)
        .filter(|_| util < rules.held_below);
    let Some((after, holder)) = holding else {
        t.held_since = at;
        t.held_peak_util = 0;
        t.held_announced = false;
        return;
    };
    t.held_peak_util = t.held_peak_util.max(util);
    let held_for = at - t.held_since;
    if !t.held_announced && held_for >= after {
        t.held_announced = true;
        found.push(Finding::IdleHeld {
            id: b.id,
            gpu: holder.uuid.clone(),
            // Without per-process figures (some drivers), what the GPU says it holds.
            memory_bytes: match held(holder) {
                0 => holder.memory_used,
                n => n,
            },
            util_pct: t.held_peak_util,
            held_secs: held_for.num_seconds(),
        });
    }
}

/// Sends SIGTERM to the intruder `pid` if it is still the process the reading saw: one that
/// started before `seen` (when the reading was taken, give or take the kernel's one-second
/// boot time), so a pid that ended and was reused since is left alone. Whether it was sent.
fn terminate(pid: u32, seen: std::time::SystemTime) -> bool {
    crate::procs::signal_if(
        pid,
        || {
            crate::procs::started_at(pid)
                .is_some_and(|t| t <= seen + std::time::Duration::from_secs(1))
        },
        libc::SIGTERM,
    )
}

/// Records the usage of bookings as they end, until `shutdown` resolves: listens to the
/// state's events and sweeps after each slot end or release (and after missing events).
pub async fn run(watch: Arc<Watch>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut events = watch.state.events.subscribe();
    loop {
        let sweep = tokio::select! {
            e = events.recv() => match e {
                Ok(e) => matches!(e.kind, EventKind::SlotEnded | EventKind::BookingReleased),
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            },
            _ = &mut shutdown => return,
        };
        if sweep {
            let w = watch.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || w.sweep()).await {
                eprintln!("gpubook-agent: recording usage failed: {e}");
            }
        }
    }
}
