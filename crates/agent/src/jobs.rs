//! The job runner: starts a booking's job at its slot's start, as its owner, with exactly the
//! booked GPUs visible; watches it; stops it at the slot's end (the booking's signal, then
//! SIGKILL after the grace period, to everything it started); re-adopts running jobs after a
//! restart; and never starts a job twice.
//!
//! Every job carries `GPUBOOK_JOB_KEY=<agent instance>-<booking>-<tag>` in its environment,
//! which its descendants inherit: the runner finds them through /proc even after they left the
//! job's process group with setsid, and after a crash it finds a job it started but had not
//! recorded. The tag is a keyed hash of the booking's number under a secret only the agent
//! knows, so no job can name another booking's key; and a process is taken for a booking's
//! only if it also runs as the booking's owner.
//!
//! The job is started as its owner before anything it names is touched: the working directory
//! is entered after the switch to the owner's uid, so a directory the owner may not enter is
//! refused as it would be in their own shell.
//!
//! The runner acts on the state's committed events, so the plan and the store stay the single
//! source of truth: a slot that started is a job to start, a slot that ended is a job to stop.

mod as_owner;
mod ending;
mod launch;
mod limits;
mod patrol;
mod spawn;

pub use as_owner::owner_command;
pub(crate) use ending::end_signal;
pub use ending::signal_number;
pub use spawn::job_vars;
pub(crate) use spawn::login_shell;

use crate::identity;
use crate::procs;
use crate::state::State;
use chrono::{DateTime, Utc};
use ending::{cgroup, terminate, unconfirmed};
use gpubook_core::{Booking, BookingId, BookingState, ChangeKind, JobRun, JobState};
use limits::{cut_log, last_line, system_limits};
use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Default seconds between the end signal and SIGKILL.
pub const DEFAULT_GRACE_SECS: u32 = 30;
/// A job that exits with 126 or 127 this soon could not run its command: "failed to start".
const EXEC_FAILURE_WINDOW: Duration = Duration::from_secs(5);
/// How often an adopted job (not our child) is checked for life.
const ADOPTED_POLL: Duration = Duration::from_millis(250);
/// How often running jobs are looked over: an end due (enforced from memory even when the
/// store cannot be written), an end signal due early because another booking follows on the
/// GPUs, a log over its limit.
const PATROL: Duration = Duration::from_secs(1);
/// How long after a stop that could not be confirmed (the agent could not look at /proc) it
/// is tried again.
const STOP_RETRY: Duration = Duration::from_secs(5);
/// Environment variables the agent sets for every job; a booking's own `env` never overrides
/// them (the plan refuses them when booking; older stored bookings have them skipped).
pub fn reserved_var(name: &str) -> bool {
    name == "CUDA_VISIBLE_DEVICES" || name == "CUDA_DEVICE_ORDER" || name.starts_with("GPUBOOK_")
}
/// The environment variable that marks a job and its descendants.
pub const JOB_KEY_VAR: &str = "GPUBOOK_JOB_KEY";

/// What finds one job's processes: see [`Jobs::marks`].
#[derive(Debug, Clone)]
struct Marks {
    /// `GPUBOOK_JOB_KEY` as this agent sets it.
    key: String,
    /// The key an older agent set; the job's cgroup's name.
    plain: String,
}

impl Marks {
    /// The processes carrying either mark and running as `owner` (when known); an error when
    /// /proc cannot be read.
    fn pids(&self, owner: Option<u32>) -> std::io::Result<Vec<u32>> {
        let mut all = procs::with_env(JOB_KEY_VAR, &self.key, owner)?;
        all.extend(procs::with_env(JOB_KEY_VAR, &self.plain, owner)?);
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }
}

/// How a job ended, as its watcher saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exit {
    /// Exit code, if it exited.
    code: Option<i32>,
    /// Signal, if one ended it.
    signal: Option<i32>,
}

/// A job being watched.
#[derive(Debug, Clone)]
struct Watched {
    /// Its main process.
    pid: u32,
    /// That process's start time, so a reused pid is never taken for it.
    ticks: Option<u64>,
    /// Resolves with how it ended (`None` inside: unknown, for an adopted job).
    done: watch::Receiver<Option<Option<Exit>>>,
}

/// The runner's state.
#[derive(Debug)]
pub struct Jobs {
    /// The shared state.
    state: Arc<State>,
    /// This agent's instance id, the first part of every job key.
    instance: String,
    /// The secret that makes each job's key unguessable (kept in the root-only store).
    secret: String,
    /// The system's default resource limits (those of pid 1), given to every job instead of
    /// the agent's own (its unit may raise some, e.g. open files).
    limits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    /// Where job logs go.
    log_dir: PathBuf,
    /// The agent runs as root: jobs run as their owners.
    system: bool,
    /// The agent's own uid (personal mode runs only its own user's jobs).
    own_uid: u32,
    /// Jobs with a watcher. A plain mutex: never held across an await.
    watched: Mutex<HashMap<BookingId, Watched>>,
    /// Jobs being stopped, so a stop is not started twice.
    stopping: Mutex<HashSet<BookingId>>,
    /// Jobs that are over whose leftovers are being swept, so a sweep is not started twice.
    sweeping: Mutex<HashSet<BookingId>>,
    /// Job states the store could not take yet (a full disk), newest per booking, with the
    /// event they carry: written again by every patrol until they are in.
    unrecorded: Mutex<HashMap<BookingId, (ChangeKind, JobRun)>>,
    /// Where each booking's staged data is (see `transfer`): a job waits for it.
    stages: crate::transfer::StageStates,
}

impl Jobs {
    /// A runner over `state`, keeping logs under `state_dir/logs`.
    pub fn new(
        state: Arc<State>,
        instance: String,
        secret: String,
        state_dir: &std::path::Path,
    ) -> Self {
        let own_uid = identity::current_uid();
        Self {
            state,
            instance,
            secret,
            limits: system_limits(),
            log_dir: state_dir.join("logs"),
            system: own_uid == 0,
            own_uid,
            watched: Mutex::new(HashMap::new()),
            stopping: Mutex::new(HashSet::new()),
            sweeping: Mutex::new(HashSet::new()),
            unrecorded: Mutex::new(HashMap::new()),
            stages: Default::default(),
        }
    }

    /// Where each booking's staged data is, shared with the stage runner.
    pub fn stages(&self) -> crate::transfer::StageStates {
        self.stages.clone()
    }

    /// Whether this agent runs jobs as their owners (system mode) or only as itself.
    pub fn system_mode(&self) -> bool {
        self.system
    }

    /// The agent's own uid.
    pub fn own_uid(&self) -> u32 {
        self.own_uid
    }

    /// Booking `id`'s job key: the instance, the booking, and a tag only this agent can make.
    pub fn key(&self, id: BookingId) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::new()
            .chain_update(self.secret.as_bytes())
            .chain_update(b"\0job-key\0")
            .chain_update(id.to_string().as_bytes())
            .finalize();
        let tag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{}-{tag}", self.instance, id)
    }

    /// What marks booking `id`'s processes: its key, and the plain name an agent before the
    /// keyed hash gave it (jobs an older agent started are still found after an upgrade; only
    /// the owner's processes count, so the plain name lets no one reach another's job). The
    /// plain name also names the job's cgroup, which anyone may read.
    fn marks(&self, id: BookingId) -> Marks {
        Marks {
            key: self.key(id),
            plain: format!("{}-{}", self.instance, id),
        }
    }

    /// The uid of booking `id`'s owner, where the system knows them: only their processes are
    /// taken for the job.
    fn owner_uid(&self, b: &Booking) -> Option<u32> {
        identity::account(&b.owner).map(|a| a.uid)
    }

    /// Where booking `id`'s log is.
    pub fn log_path(&self, id: BookingId) -> PathBuf {
        self.log_dir.join(format!("booking-{id}.log"))
    }

    /// Runs until `shutdown`: brings every job in line with its booking, then follows events.
    /// Jobs keep running when the agent stops; the next agent re-adopts them.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut events = self.state.events.subscribe();
        self.reconcile_all();
        let mut patrol = tokio::time::interval(PATROL);
        patrol.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = patrol.tick() => self.patrol(),
                ev = events.recv() => match ev {
                    Ok(e) => {
                        if e.booking.job.is_some() {
                            self.reconcile(e.booking.id, false);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => self.reconcile_all(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = &mut shutdown => return,
            }
        }
    }

    fn reconcile_all(self: &Arc<Self>) {
        let ids: Vec<BookingId> = {
            let inner = self.state.lock();
            inner
                .plan
                .bookings()
                .filter(|b| b.job.is_some())
                .filter(|b| {
                    !b.state.is_final() || b.run.as_ref().is_some_and(|r| !r.state.is_over())
                })
                .map(|b| b.id)
                .collect()
        };
        for id in ids {
            self.reconcile(id, true);
        }
    }

    /// Makes booking `id`'s job match its state: start, adopt, stop, or nothing. `recovering`:
    /// the booking may have been started by an agent before this one (at start-up, after a
    /// lag), so look for its processes before starting it; a slot that starts while this
    /// agent runs cannot have been started before, which keeps /proc off the start's path.
    fn reconcile(self: &Arc<Self>, id: BookingId, recovering: bool) {
        let Some(b) = self.state.lock().plan.get(id).cloned() else {
            return;
        };
        if b.job.is_none() || self.unrecorded.lock().unwrap().contains_key(&id) {
            // Nothing to run, or what happened to it waits to be written: the store lags.
            return;
        }
        let run_state = b.run.as_ref().map(|r| r.state);
        let watched = self.watched.lock().unwrap().contains_key(&id);
        match (b.state, run_state) {
            (BookingState::Active, None | Some(JobState::Starting)) if !watched => {
                self.start(b, recovering);
            }
            (BookingState::Active, Some(JobState::Running)) if !watched => self.adopt(b),
            (s, Some(JobState::Running)) if s.is_final() => {
                if !watched {
                    self.adopt(b.clone());
                }
                self.stop(b, None);
            }
            // A job that ended early but kept its slot: what it left running goes at the slot's end
            // (without keep_slot that happened when it ended, in `ended`).
            (s, Some(over))
                if s.is_final()
                    && over.is_over()
                    && b.job.as_ref().is_some_and(|j| j.keep_slot) =>
            {
                self.sweep(&b)
            }
            (BookingState::Ended, None) => {
                // The whole slot passed while no agent ran.
                let msg = "its slot ended before the agent could start it".to_string();
                self.record(id, ChangeKind::JobFailed, move |r| {
                    r.state = JobState::FailedToStart;
                    r.message = Some(msg);
                });
            }
            _ => {}
        }
    }

    /// Writes the job's new run state and its event. Where the store cannot take it (a full
    /// disk) it is kept here and written by a later patrol: what the job did is never lost,
    /// and a job stopped meanwhile is not taken for lost.
    fn record(&self, id: BookingId, kind: ChangeKind, update: impl FnOnce(&mut JobRun)) {
        // One lock at a time: the patrol takes the state's lock before this map's.
        let kept = self
            .unrecorded
            .lock()
            .unwrap()
            .get(&id)
            .map(|(_, run)| run.clone());
        let current = match kept {
            Some(run) => Some(run),
            None => self.state.lock().plan.get(id).and_then(|b| b.run.clone()),
        };
        let mut run = current.unwrap_or_else(JobRun::starting);
        update(&mut run);
        self.write_run(id, kind, run);
    }

    /// Stores `run` as booking `id`'s with a `kind` event, or keeps it for a later try.
    fn write_run(&self, id: BookingId, kind: ChangeKind, run: JobRun) {
        let kept = run.clone();
        match self
            .state
            .observe(id, kind, None, move |b| b.run = Some(run))
        {
            Ok(_) => {
                self.unrecorded.lock().unwrap().remove(&id);
            }
            Err(e) => {
                let mut unrecorded = self.unrecorded.lock().unwrap();
                if !unrecorded.contains_key(&id) {
                    eprintln!(
                        "gpubook-agent: cannot record the job of booking {id} ({e}); kept in \
                         memory and written when the store can take it"
                    );
                }
                unrecorded.insert(id, (kind, kept));
            }
        }
    }

    /// The job's main process ended: record how, and give the rest of the slot back.
    fn ended(self: &Arc<Self>, id: BookingId, exit: Option<Exit>, ran: Duration) {
        if self.stopping.lock().unwrap().contains(&id) {
            // The stop records the end, once every process is gone.
            return;
        }
        // Or it did already: the stop records before it lets go of `stopping`, so a job seen
        // ending after that is one the stop ended.
        let kept = self
            .unrecorded
            .lock()
            .unwrap()
            .get(&id)
            .map(|(_, r)| r.state);
        let recorded = || {
            let inner = self.state.lock();
            inner
                .plan
                .get(id)
                .and_then(|b| b.run.as_ref())
                .map(|r| r.state)
        };
        if kept.or_else(recorded).is_some_and(|s| s.is_over()) {
            self.watched.lock().unwrap().remove(&id);
            return;
        }
        self.watched.lock().unwrap().remove(&id);
        let Some(b) = self.state.lock().plan.get(id).cloned() else {
            return;
        };
        let now = self.state.clock.now();
        let code = exit.and_then(|e| e.code);
        let failed_to_exec = matches!(code, Some(126) | Some(127)) && ran < EXEC_FAILURE_WINDOW;
        if failed_to_exec {
            let tail = last_line(&self.log_path(id));
            self.record(id, ChangeKind::JobFailed, |r| {
                r.state = JobState::FailedToStart;
                r.ended_at = Some(now);
                r.exit_code = code;
                r.message = Some(match tail {
                    Some(t) => format!("the command could not run: {t}"),
                    None => "the command could not run".into(),
                });
            });
        } else {
            let started = b.run.as_ref().and_then(|r| r.started_at);
            let message = describe_exit(exit, started, now);
            self.record(id, ChangeKind::JobFinished, |r| {
                r.state = JobState::Finished;
                r.ended_at = Some(now);
                r.exit_code = code;
                r.signal = exit.and_then(|e| e.signal);
                r.message = Some(message);
            });
        }
        self.last_cut(id);
        let keep = b.job.as_ref().is_some_and(|j| j.keep_slot);
        if !keep {
            // The job is its command: what it left running goes with it, as in a batch system.
            self.sweep(&b);
        }
        self.give_back(&b);
    }

    /// The policy's `max_grace`, in seconds.
    fn max_grace(&self) -> i64 {
        self.state.lock().plan.policy().max_grace_secs
    }

    /// The last look at a finished job's log: what it wrote since the previous patrol is cut
    /// to the policy's `max_log` too.
    fn last_cut(&self, id: BookingId) {
        let max = self.state.lock().plan.policy().max_log_bytes;
        cut_log(&self.log_path(id), max);
    }

    /// Stops whatever still carries the key of a job that is over (its main process ended):
    /// its end signal, then SIGKILL after the grace period. No event: the job's end was told.
    fn sweep(self: &Arc<Self>, b: &Booking) {
        let marks = self.marks(b.id);
        let owner = self.owner_uid(b);
        let none_left = marks.pids(owner).is_ok_and(|f| f.is_empty());
        if none_left && cgroup::members(&marks.plain).is_empty() {
            cgroup::remove(&marks.plain);
            return;
        }
        if !self.sweeping.lock().unwrap().insert(b.id) {
            return;
        }
        let (signal, _, grace) = end_signal(b, self.max_grace());
        let (me, id) = (self.clone(), b.id);
        tokio::spawn(async move {
            // Until it is all seen gone: a look that failed (no descriptors) is tried again.
            let mut tries = 0u32;
            loop {
                let kill_at = tokio::time::Instant::now() + grace;
                if terminate(&marks, owner, None, signal, kill_at)
                    .await
                    .is_some()
                {
                    break;
                }
                unconfirmed(id, "what booking {id}'s job left running", &mut tries);
                tokio::time::sleep(STOP_RETRY).await;
            }
            cgroup::remove(&marks.plain);
            me.sweeping.lock().unwrap().remove(&id);
        });
    }

    /// Releases the rest of the slot after the job ended early, unless the booking keeps it.
    fn give_back(&self, b: &Booking) {
        let keep = b.job.as_ref().is_some_and(|j| j.keep_slot);
        if keep {
            return;
        }
        let id = b.id;
        let result = self.state.decide(|plan, now| match plan.get(id) {
            Some(cur) if cur.state == BookingState::Active && cur.interval.end > now => {
                plan.release_by_agent(id, now)
            }
            _ => Vec::new(),
        });
        if let Err(e) = result {
            eprintln!("gpubook-agent: cannot release booking {id} after its job ended: {e}");
        }
    }

    /// Stops the job at its slot's end: its signal to everything it started, then SIGKILL.
    /// `follower`: another booking starts on one of its GPUs at the end, so the signal goes
    /// out `grace` before the end and the GPUs are free at the next start.
    fn stop(self: &Arc<Self>, b: Booking, follower: Option<(BookingId, DateTime<Utc>)>) {
        let id = b.id;
        if !self.stopping.lock().unwrap().insert(id) {
            return;
        }
        let (signal, signal_name, grace) = end_signal(&b, self.max_grace());
        let marks = self.marks(id);
        let owner = self.owner_uid(&b);
        let watched = self.watched.lock().unwrap().get(&id).cloned();
        // SIGKILL after the grace; when someone follows, at their start, however late the end
        // signal went out.
        let kill_after = match follower {
            Some((_, next)) => (next - self.state.clock.now())
                .to_std()
                .unwrap_or_default()
                .min(grace),
            None => grace,
        };
        let me = self.clone();
        tokio::spawn(async move {
            // `stopping` stays set until the end is recorded, retries included: the job's
            // main process ending meanwhile is the stop's to record, not `ended`'s.
            let mut kill_at = tokio::time::Instant::now() + kill_after;
            let mut tries = 0u32;
            let killed = loop {
                if let Some(killed) =
                    terminate(&marks, owner, watched.as_ref(), signal, kill_at).await
                {
                    break killed;
                }
                // Not confirmed gone (the agent could not look at /proc, or something would
                // not die): never recorded as stopped while it may run; tried again.
                unconfirmed(id, "that booking {id}'s job ended", &mut tries);
                tokio::time::sleep(STOP_RETRY).await;
                kill_at = tokio::time::Instant::now();
            };
            let exit = watched.and_then(|w| *w.done.borrow()).flatten();
            let now = me.state.clock.now();
            let when = match follower {
                Some((next, _)) => format!(
                    "stopped {} s early, so its GPUs are free when booking {next} starts",
                    kill_after.as_secs()
                ),
                None => "stopped at the slot's end".to_string(),
            };
            let message = if killed {
                format!(
                    "{when}: it did not end within {} s of {signal_name} and was killed with \
                     SIGKILL",
                    grace.as_secs()
                )
            } else {
                format!("{when} with {signal_name}")
            };
            me.record(id, ChangeKind::JobStopped, |r| {
                r.state = JobState::Stopped;
                r.ended_at = Some(now);
                // Killed in its grace: the job was killed, whatever its main process died of
                // first (a shell ending on SIGTERM while a child ignored it).
                (r.exit_code, r.signal) = if killed {
                    (None, Some(libc::SIGKILL))
                } else {
                    (
                        exit.and_then(|e| e.code),
                        exit.and_then(|e| e.signal).or(Some(signal)),
                    )
                };
                r.message = Some(message);
            });
            cgroup::remove(&marks.plain);
            me.last_cut(id);
            me.watched.lock().unwrap().remove(&id);
            me.stopping.lock().unwrap().remove(&id);
        });
    }
}

fn describe_exit(exit: Option<Exit>, started: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let ran = started
        .map(|s| gpubook_core::duration::format_duration(now - s))
        .unwrap_or_else(|| "an unknown time".into());
    match exit {
        Some(Exit { code: Some(c), .. }) => format!("exit {c} after {ran}"),
        Some(Exit {
            signal: Some(s), ..
        }) => format!("killed by signal {s} after {ran}"),
        _ => format!("ended after {ran}; exit status unknown (the agent was restarted meanwhile)"),
    }
}

#[cfg(test)]
mod tests;
