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

use crate::identity::{self, Account};
use crate::procs;
use crate::state::State;
use chrono::{DateTime, Utc};
use gpubook_core::{Booking, BookingId, BookingState, ChangeKind, JobRun, JobState};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
/// The errno the job's pre-exec step reports when it cannot enter the working directory as the
/// owner: one no other step of the spawn returns, so the two are told apart.
const CWD_ERRNO: i32 = libc::EBADE;
/// Environment variables the agent sets for every job; a booking's own `env` never overrides
/// them (the plan refuses them when booking; older stored bookings have them skipped).
pub fn reserved_var(name: &str) -> bool {
    name == "CUDA_VISIBLE_DEVICES" || name == "CUDA_DEVICE_ORDER" || name.starts_with("GPUBOOK_")
}
/// The line put at the cut of a log that reached the policy's `max_log`.
const LOG_CUT: &str =
    "\n[gpubook-agent: this log reached the lab's size limit (max_log); later output is dropped]\n";

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
        }
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
        let mut run = current.unwrap_or(JobRun {
            state: JobState::Starting,
            pid: None,
            start_ticks: None,
            started_at: None,
            ended_at: None,
            exit_code: None,
            signal: None,
            message: None,
            log: None,
        });
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

    fn start(self: &Arc<Self>, b: Booking, recovering: bool) {
        let id = b.id;
        let marks = self.marks(id);
        // Started before a crash but not recorded? Then it runs: adopt it, never start twice.
        let mut found: Vec<(u64, u32)> = if recovering {
            let Ok(pids) = marks.pids(self.owner_uid(&b)) else {
                // Whether it runs cannot be told now: never start it twice; look again later.
                eprintln!(
                    "gpubook-agent: cannot look for booking {id}'s job in /proc; trying again"
                );
                return;
            };
            pids.into_iter()
                .filter_map(|pid| procs::start_ticks(pid).map(|t| (t, pid)))
                .collect()
        } else {
            Vec::new()
        };
        found.sort();
        if let Some((ticks, pid)) = found.first().copied() {
            let log = self.log_path(id).display().to_string();
            self.record(id, ChangeKind::JobStarted, |r| {
                r.state = JobState::Running;
                r.pid = Some(pid);
                r.start_ticks = Some(ticks);
                r.log = Some(log);
                r.message = Some("found running after an agent restart; adopted".into());
            });
            self.watch_adopted(id, pid, ticks);
            return;
        }
        match self.spawn(&b, &marks) {
            Ok((child, pid)) => {
                let ticks = procs::start_ticks(pid);
                let (tx, rx) = watch::channel(None);
                self.watched.lock().unwrap().insert(
                    id,
                    Watched {
                        pid,
                        ticks,
                        done: rx,
                    },
                );
                let log = self.log_path(id).display().to_string();
                let now = self.state.clock.now();
                self.record(id, ChangeKind::JobStarted, |r| {
                    r.state = JobState::Running;
                    r.pid = Some(pid);
                    r.start_ticks = ticks;
                    r.started_at = Some(now);
                    r.log = Some(log);
                    r.message = None;
                });
                let me = self.clone();
                tokio::spawn(async move {
                    let mut child = child;
                    let began = std::time::Instant::now();
                    let exit = child.wait().await.ok().map(|s| Exit {
                        code: s.code(),
                        signal: s.signal(),
                    });
                    let _ = tx.send(Some(exit));
                    me.ended(id, exit, began.elapsed());
                });
            }
            Err(why) => {
                let now = self.state.clock.now();
                self.record(id, ChangeKind::JobFailed, |r| {
                    r.state = JobState::FailedToStart;
                    r.ended_at = Some(now);
                    r.message = Some(why);
                });
                self.give_back(&b);
            }
        }
    }

    /// Starts the job's process; the error says why it could not, in words.
    fn spawn(&self, b: &Booking, marks: &Marks) -> Result<(tokio::process::Child, u32), String> {
        let key = marks.key.as_str();
        let job = b.job.as_ref().ok_or("the booking has no job")?;
        let account = identity::account(&b.owner)
            .ok_or_else(|| format!("there is no user {} on this server", b.owner))?;
        if !self.system && account.uid != self.own_uid {
            return Err(format!(
                "this agent runs in personal mode as uid {}: it cannot run jobs for {}",
                self.own_uid, b.owner
            ));
        }
        let cwd = job.cwd.clone().unwrap_or_else(|| account.home.clone());
        // Never resolved against the agent's own directory: the client sends absolute paths.
        if !cwd.starts_with('/') {
            return Err(format!(
                "the working directory {cwd:?} is not an absolute path; give the full path on \
                 the server"
            ));
        }
        let cwd_c = std::ffi::CString::new(cwd.as_bytes())
            .map_err(|_| "the working directory holds a NUL byte".to_string())?;
        let log = self.open_log(b.id, &account)?;
        let shell = login_shell(&account);
        let gpus: Vec<&str> = b.gpus.iter().map(|g| g.0.as_str()).collect();
        let mut cmd = tokio::process::Command::new(&shell);
        // The booking's own variables first, so the agent's below always win; the plan refuses
        // these names when booking, and an older stored booking has them skipped here.
        cmd.arg("-lc")
            .arg(&job.command)
            .env_clear()
            .envs(job.env.iter().filter(|(k, _)| !reserved_var(k)))
            .env("HOME", &account.home)
            .env("USER", &b.owner)
            .env("LOGNAME", &b.owner)
            .env("SHELL", &shell)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("CUDA_VISIBLE_DEVICES", gpus.join(","))
            .env("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
            .env("GPUBOOK_BOOKING_ID", b.id.to_string())
            .env("GPUBOOK_SLOT_END", b.interval.end.to_rfc3339())
            .env("GPUBOOK_GPUS", gpus.join(","))
            .env(JOB_KEY_VAR, key)
            .stdin(std::process::Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| format!("cannot use the log: {e}"))?,
            )
            .stderr(log)
            .kill_on_drop(false);
        if let Ok(lang) = std::env::var("LANG") {
            if !job.env.contains_key("LANG") {
                cmd.env("LANG", lang);
            }
        }
        let switch = self.system && account.uid != self.own_uid;
        // Its own cgroup where the host delegates one: opened here, joined in the child.
        let cgroup_procs: Option<std::fs::File> = cgroup::create(&marks.plain).and_then(|dir| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .ok()
        });
        let cgroup_fd = cgroup_procs.as_ref().map(|f| {
            use std::os::unix::io::AsRawFd;
            f.as_raw_fd()
        });
        let Account {
            uid, gid, groups, ..
        } = account;
        let limits = self.limits.clone();
        // SAFETY: the closure runs in the child between fork and exec and only makes
        // async-signal-safe system calls on values prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the writer into the cgroup. Without one the job still runs: the
                // key in its environment finds its processes.
                if let Some(fd) = cgroup_fd {
                    libc::write(fd, b"0".as_ptr().cast(), 1);
                }
                // What the agent's unit gave the agent is not the job's: the system's default
                // limits, the default file mode mask, no shield from the OOM killer. Best
                // effort: an agent that is not root may not raise a hard limit back.
                for (resource, limit) in &limits {
                    if libc::setrlimit(*resource, limit) != 0 {
                        // Not allowed to raise the hard limit (no CAP_SYS_RESOURCE): as close
                        // as the agent's own hard limit lets it.
                        let mut own = libc::rlimit {
                            rlim_cur: 0,
                            rlim_max: 0,
                        };
                        if libc::getrlimit(*resource, &mut own) == 0 {
                            let capped = libc::rlimit {
                                rlim_cur: limit.rlim_cur.min(own.rlim_max),
                                rlim_max: limit.rlim_max.min(own.rlim_max),
                            };
                            libc::setrlimit(*resource, &capped);
                        }
                    }
                }
                libc::umask(0o022);
                let adj = libc::open(
                    c"/proc/self/oom_score_adj".as_ptr(),
                    libc::O_WRONLY | libc::O_CLOEXEC,
                );
                if adj >= 0 {
                    libc::write(adj, b"0".as_ptr().cast(), 1);
                    libc::close(adj);
                }
                // Groups (the owner's supplementary ones), then gid, then uid: after setuid
                // nothing else may be changed.
                if switch
                    && (libc::setgroups(groups.len() as _, groups.as_ptr()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                // Only now, as the owner: a directory they may not enter is refused, whether
                // or not it exists for root.
                if libc::chdir(cwd_c.as_ptr()) != 0 {
                    return Err(std::io::Error::from_raw_os_error(CWD_ERRNO));
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            if e.raw_os_error() == Some(CWD_ERRNO) {
                format!(
                    "cannot enter the working directory {cwd} as {}: it does not exist or {} \
                     may not enter it",
                    b.owner, b.owner
                )
            } else {
                format!("cannot start {shell} -lc: {e}")
            }
        })?;
        drop(cgroup_procs);
        let pid = child
            .id()
            .ok_or("the job exited before it could be watched")?;
        Ok((child, pid))
    }

    /// Opens (appending) the job's log: owned by the job's owner, readable by nobody else.
    fn open_log(&self, id: BookingId, owner: &Account) -> Result<std::fs::File, String> {
        std::fs::create_dir_all(&self.log_dir)
            .map_err(|e| format!("cannot create {}: {e}", self.log_dir.display()))?;
        // Nobody may list the directory. (The state directory above it is the agent's alone,
        // so logs are read through the agent: `gpubook logs`.)
        let _ = std::fs::set_permissions(&self.log_dir, std::fs::Permissions::from_mode(0o711));
        let path = self.log_path(id);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open the log {}: {e}", path.display()))?;
        if self.system {
            use std::os::unix::io::AsRawFd;
            // SAFETY: fchown on a descriptor we own.
            let rc = unsafe { libc::fchown(file.as_raw_fd(), owner.uid, owner.gid) };
            if rc != 0 {
                return Err(format!(
                    "cannot give the log to its owner: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(file)
    }

    fn adopt(self: &Arc<Self>, b: Booking) {
        let Some(run) = &b.run else { return };
        let (Some(pid), Some(ticks)) = (run.pid, run.start_ticks) else {
            return self.lost(
                b.id,
                "the agent restarted and the job's process is not known",
            );
        };
        if procs::is_alive(pid, ticks) {
            self.watch_adopted(b.id, pid, ticks);
        } else if self
            .marks(b.id)
            .pids(self.owner_uid(&b))
            .map_or(true, |found| !found.is_empty())
        {
            // The main process ended while no agent watched, but something it started still
            // runs: the job is over (status unknown), and what it left behind is swept away.
            self.ended(b.id, None, Duration::ZERO);
        } else {
            self.lost(
                b.id,
                "the job ended while the agent was not running; its exit status is unknown",
            );
        }
    }

    fn lost(&self, id: BookingId, why: &str) {
        let now = self.state.clock.now();
        let why = why.to_string();
        self.record(id, ChangeKind::JobLost, |r| {
            r.state = JobState::Lost;
            r.ended_at = Some(now);
            r.message = Some(why);
        });
    }

    /// Watches a job that is not this process's child, through /proc.
    fn watch_adopted(self: &Arc<Self>, id: BookingId, pid: u32, ticks: u64) {
        let (tx, rx) = watch::channel(None);
        self.watched.lock().unwrap().insert(
            id,
            Watched {
                pid,
                ticks: Some(ticks),
                done: rx,
            },
        );
        let me = self.clone();
        tokio::spawn(async move {
            let began = std::time::Instant::now();
            while procs::is_alive(pid, ticks) {
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            let _ = tx.send(Some(None));
            me.ended(id, None, began.elapsed());
        });
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
                r.exit_code = exit.and_then(|e| e.code);
                r.signal = exit.and_then(|e| e.signal).or(Some(if killed {
                    libc::SIGKILL
                } else {
                    signal
                }));
                r.message = Some(message);
            });
            cgroup::remove(&marks.plain);
            me.last_cut(id);
            me.watched.lock().unwrap().remove(&id);
            me.stopping.lock().unwrap().remove(&id);
        });
    }

    /// Looks over the running jobs once: a slot whose end has passed in the plan held in memory
    /// is stopped even if the store could not record its end (a full disk); a job whose
    /// GPUs another booking takes at its end gets its end signal `grace` early; a log over the
    /// policy's `max_log` is cut. Also starts what a failed look at /proc left unstarted.
    fn patrol(self: &Arc<Self>) {
        let waiting: Vec<(BookingId, (ChangeKind, JobRun))> = self
            .unrecorded
            .lock()
            .unwrap()
            .iter()
            .map(|(id, v)| (*id, v.clone()))
            .collect();
        for (id, (kind, run)) in waiting {
            self.write_run(id, kind, run);
        }
        let now = self.state.clock.now();
        let ids: Vec<BookingId> = self.watched.lock().unwrap().keys().copied().collect();
        let kept: HashSet<BookingId> = self.unrecorded.lock().unwrap().keys().copied().collect();
        let (due, max_log, unstarted) = {
            let inner = self.state.lock();
            let mut due = Vec::new();
            for id in &ids {
                let Some(b) = inner.plan.get(*id) else {
                    continue;
                };
                if b.interval.end <= now {
                    due.push((b.clone(), None));
                    continue;
                }
                let (_, _, grace) = end_signal(b, inner.plan.policy().max_grace_secs);
                let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero());
                // Someone whose booking starts on one of its GPUs within the grace after its
                // end: the kill must land at their start, so the signal goes out `grace`
                // before it.
                let after = gpubook_core::Interval {
                    start: b.interval.end,
                    end: b.interval.end + grace.max(chrono::Duration::seconds(1)),
                };
                if b.state == BookingState::Active && b.interval.end - grace <= now {
                    let next = inner
                        .plan
                        .conflicts(&b.gpus, &after, Some(b.id))
                        .into_iter()
                        .map(|c| (c.interval.start.max(b.interval.end), c.booking))
                        .min();
                    if let Some((start, id)) = next {
                        if start - grace <= now {
                            due.push((b.clone(), Some((id, start))));
                        }
                    }
                }
            }
            let unstarted: Vec<BookingId> = inner
                .plan
                .bookings()
                .filter(|b| b.state == BookingState::Active && b.job.is_some())
                .filter(|b| b.run.as_ref().is_none_or(|r| r.state == JobState::Starting))
                .map(|b| b.id)
                .filter(|id| !ids.contains(id))
                .filter(|id| !kept.contains(id))
                .collect();
            (due, inner.plan.policy().max_log_bytes, unstarted)
        };
        for (b, follower) in due {
            self.stop(b, follower);
        }
        for id in ids {
            cut_log(&self.log_path(id), max_log);
        }
        for id in unstarted {
            self.reconcile(id, true);
        }
    }
}

/// Says in the log that `what` (with `{id}` for the booking) could not be confirmed, the first
/// time and then every twelfth try (a minute apart at most): a process stuck in the kernel
/// must not fill the log.
fn unconfirmed(id: BookingId, what: &str, tries: &mut u32) {
    if *tries % 12 == 0 {
        eprintln!(
            "gpubook-agent: cannot confirm {}; trying again every {} s",
            what.replace("{id}", &id.to_string()),
            STOP_RETRY.as_secs()
        );
    }
    *tries += 1;
}

/// Cuts the log at `path` back to `max` bytes and a line saying so, once it is longer. The job
/// appends to it: what it writes after the cut is dropped at the next look, so the file holds
/// at most `max`, the line, and what the job wrote in one patrol's time.
fn cut_log(path: &std::path::Path, max: u64) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.len() <= max + LOG_CUT.len() as u64 {
        return;
    }
    let Ok(file) = std::fs::OpenOptions::new().append(true).open(path) else {
        return;
    };
    use std::io::Write;
    if file.set_len(max).is_ok() {
        let _ = (&file).write_all(LOG_CUT.as_bytes());
    }
}

/// The system's default resource limits: those of pid 1, which every login inherits, except
/// open files: systemd raises its own to the kernel's maximum but gives every service and login
/// 1024 (soft; `select()` breaks above it) and 524288 (hard). Read once; empty where
/// /proc/1/limits cannot be read (then jobs keep the agent's).
fn system_limits() -> Vec<(libc::__rlimit_resource_t, libc::rlimit)> {
    std::fs::read_to_string("/proc/1/limits")
        .map(|t| parse_limits(&t))
        .unwrap_or_default()
        .into_iter()
        .map(|(resource, limit)| match resource {
            libc::RLIMIT_NOFILE => (resource, login_files(limit)),
            _ => (resource, limit),
        })
        .collect()
}

/// What a login gets for open files, given pid 1's limit.
fn login_files(pid1: libc::rlimit) -> libc::rlimit {
    libc::rlimit {
        rlim_cur: pid1.rlim_cur.min(1024),
        rlim_max: pid1.rlim_max.min(524_288),
    }
}

/// The limits in a /proc/PID/limits text.
fn parse_limits(text: &str) -> Vec<(libc::__rlimit_resource_t, libc::rlimit)> {
    const NAMES: &[(&str, libc::__rlimit_resource_t)] = &[
        ("Max cpu time", libc::RLIMIT_CPU),
        ("Max file size", libc::RLIMIT_FSIZE),
        ("Max data size", libc::RLIMIT_DATA),
        ("Max stack size", libc::RLIMIT_STACK),
        ("Max core file size", libc::RLIMIT_CORE),
        ("Max resident set", libc::RLIMIT_RSS),
        ("Max processes", libc::RLIMIT_NPROC),
        ("Max open files", libc::RLIMIT_NOFILE),
        ("Max locked memory", libc::RLIMIT_MEMLOCK),
        ("Max address space", libc::RLIMIT_AS),
        ("Max file locks", libc::RLIMIT_LOCKS),
        ("Max pending signals", libc::RLIMIT_SIGPENDING),
        ("Max msgqueue size", libc::RLIMIT_MSGQUEUE),
        ("Max nice priority", libc::RLIMIT_NICE),
        ("Max realtime priority", libc::RLIMIT_RTPRIO),
        ("Max realtime timeout", libc::RLIMIT_RTTIME),
    ];
    let value = |v: &str| {
        if v == "unlimited" {
            Some(libc::RLIM_INFINITY)
        } else {
            v.parse().ok()
        }
    };
    text.lines()
        .filter_map(|line| {
            let (name, resource) = NAMES.iter().find(|(n, _)| line.starts_with(n))?;
            let mut rest = line[name.len()..].split_whitespace();
            let (soft, hard) = (value(rest.next()?)?, value(rest.next()?)?);
            Some((
                *resource,
                libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                },
            ))
        })
        .collect()
}

/// The booking's end signal (number and name) and grace period: its own, else the default,
/// never more than the policy's `max_grace` (a booking asking for more is refused when made;
/// this holds older ones, and the default, to a policy that allows less).
fn end_signal(b: &Booking, max_grace_secs: i64) -> (i32, String, Duration) {
    let job = b.job.as_ref();
    let named = job.and_then(|j| j.end_signal.as_deref());
    let (signal, name) = match named.and_then(signal_number) {
        Some(n) => (n, named.unwrap_or_default().to_string()),
        None => (libc::SIGTERM, "SIGTERM".to_string()),
    };
    let grace = job.and_then(|j| j.grace_secs).unwrap_or(DEFAULT_GRACE_SECS);
    let grace = u64::from(grace).min(u64::try_from(max_grace_secs).unwrap_or(0));
    (signal, name, Duration::from_secs(grace))
}

/// Sends `signal` to everything of the job with `key` (its main process while it is still the
/// same live process, everything carrying the key and running as `owner`, its cgroup), waits
/// until `kill_at` for all of it to end, then SIGKILLs what is left. `Some(true)` if SIGKILL was
/// needed; `None` if the end could not be confirmed — /proc could not be read (no file
/// descriptors left), or something still ran 10 s after SIGKILL: then the job is not taken for
/// stopped, and the stop is tried again.
async fn terminate(
    marks: &Marks,
    owner: Option<u32>,
    main: Option<&Watched>,
    signal: i32,
    kill_at: tokio::time::Instant,
) -> Option<bool> {
    // The main process counts only while it is the process the job started and not a
    // zombie: a re-adopted job's zombie cannot be reaped here, and its pid may be reused.
    let main_alive = || {
        main.and_then(|w| w.ticks.map(|t| (w.pid, t)))
            .filter(|(pid, ticks)| procs::is_alive(*pid, *ticks))
            .map(|(pid, _)| pid)
    };
    // None: /proc could not be listed.
    let members = || {
        let mut all = marks.pids(owner).ok()?;
        all.extend(cgroup::members(&marks.plain));
        all.extend(main_alive());
        all.sort_unstable();
        all.dedup();
        Some(all)
    };
    signal_all(main_alive(), &members().unwrap_or_default(), signal);
    let mut killed = false;
    loop {
        let left = members();
        let main_done = main.is_none_or(|w| w.done.borrow().is_some() || main_alive().is_none());
        if left.as_ref().is_some_and(|l| l.is_empty()) && main_done {
            return Some(killed);
        }
        if tokio::time::Instant::now() >= kill_at {
            // Again on every look: a member seen only now (the agent could not look before)
            // gets it too.
            cgroup::kill(&marks.plain);
            signal_all(
                main_alive(),
                left.as_deref().unwrap_or_default(),
                libc::SIGKILL,
            );
            killed = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if killed && tokio::time::Instant::now() >= kill_at + Duration::from_secs(10) {
            // Something is left, or the agent cannot tell: not stopped yet.
            return None;
        }
    }
}

/// A cgroup (v2) per job, where the host delegates one to the agent: the agent's own cgroup
/// on a pure v2 hierarchy, writable by it (a systemd unit with `Delegate=yes`). Everything is
/// best effort: where any step fails, the job runs without one and is tracked by its key.
mod cgroup {
    use std::path::PathBuf;

    /// The directory for job `key`, if cgroups v2 are delegated here.
    fn dir(key: &str) -> Option<PathBuf> {
        let root = std::path::Path::new("/sys/fs/cgroup");
        if !root.join("cgroup.controllers").exists() {
            return None;
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
        Some(
            root.join(path.trim_start_matches('/'))
                .join(format!("gpubook-job-{key}")),
        )
    }

    /// Creates job `key`'s cgroup.
    pub fn create(key: &str) -> Option<PathBuf> {
        let d = dir(key)?;
        match std::fs::create_dir(&d) {
            Ok(()) => Some(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Some(d),
            Err(_) => None,
        }
    }

    /// The processes in job `key`'s cgroup.
    pub fn members(key: &str) -> Vec<u32> {
        dir(key)
            .and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills everything in job `key`'s cgroup at once (Linux 5.14+).
    pub fn kill(key: &str) {
        if let Some(d) = dir(key) {
            let _ = std::fs::write(d.join("cgroup.kill"), "1");
        }
    }

    /// Removes job `key`'s cgroup once it is empty.
    pub fn remove(key: &str) {
        if let Some(d) = dir(key) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Sends `signal` to the job's process group and to every process that carries its key.
fn signal_all(pid: Option<u32>, members: &[u32], signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; a vanished pid gives ESRCH.
    unsafe {
        if let Some(p) = pid {
            libc::kill(-(p as i32), signal);
        }
        for p in members {
            libc::kill(*p as i32, signal);
        }
    }
}

/// The owner's login shell, or /bin/sh where it is not a real shell (nologin, false).
fn login_shell(a: &Account) -> String {
    let s = a.shell.trim();
    if s.is_empty() || s.ends_with("nologin") || s.ends_with("/false") {
        "/bin/sh".into()
    } else {
        s.to_string()
    }
}

/// The number of a signal a booking names ("SIGTERM", "term", "USR1"), if jobs may get it.
pub fn signal_number(name: &str) -> Option<i32> {
    Some(match gpubook_core::booking::canonical_signal(name)? {
        "SIGTERM" => libc::SIGTERM,
        "SIGINT" => libc::SIGINT,
        "SIGHUP" => libc::SIGHUP,
        "SIGQUIT" => libc::SIGQUIT,
        "SIGUSR1" => libc::SIGUSR1,
        "SIGUSR2" => libc::SIGUSR2,
        "SIGKILL" => libc::SIGKILL,
        _ => return None,
    })
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

/// The last non-empty line of a file (the shell's complaint, for a command that did not run),
/// read from its last 4 KiB with a seek, whatever the file's size.
fn last_line(path: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut text = Vec::with_capacity(4096);
    file.take(4096).read_to_end(&mut text).ok()?;
    String::from_utf8_lossy(&text)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name() {
        assert_eq!(signal_number("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(signal_number("usr1"), Some(libc::SIGUSR1));
        assert_eq!(signal_number("SIGINT"), Some(libc::SIGINT));
        assert_eq!(signal_number("SIGBOGUS"), None);
        assert_eq!(signal_number("SIGSEGV"), None);
    }

    #[test]
    fn the_system_limits_are_read_from_proc() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max cpu time              unlimited            unlimited            seconds\n\
                    Max open files            1024                 524288               files\n\
                    Max realtime timeout      unlimited            unlimited            us\n";
        let limits = parse_limits(text);
        assert_eq!(limits.len(), 3);
        let files = limits
            .iter()
            .find(|(r, _)| *r == libc::RLIMIT_NOFILE)
            .unwrap()
            .1;
        assert_eq!((files.rlim_cur, files.rlim_max), (1024, 524288));
        assert!(
            !system_limits().is_empty(),
            "pid 1's limits are readable here"
        );
    }

    #[test]
    fn a_log_over_its_limit_is_cut_with_a_line_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("booking-1.log");
        std::fs::write(&path, vec![b'x'; 10_000]).unwrap();
        cut_log(&path, 4096);
        let text = std::fs::read(&path).unwrap();
        assert_eq!(text.len(), 4096 + LOG_CUT.len());
        assert!(text.ends_with(LOG_CUT.as_bytes()));
        // Under the limit: left alone.
        cut_log(&path, 1 << 20);
        assert_eq!(std::fs::read(&path).unwrap().len(), 4096 + LOG_CUT.len());
        // The tail of a large log is read without reading it all.
        std::fs::write(
            &path,
            [vec![b'y'; 1 << 20], b"\nsh: 1: nope: not found\n".to_vec()].concat(),
        )
        .unwrap();
        assert_eq!(last_line(&path).as_deref(), Some("sh: 1: nope: not found"));
    }

    #[test]
    fn the_agent_s_variables_cannot_be_overridden() {
        for name in [
            "CUDA_VISIBLE_DEVICES",
            "CUDA_DEVICE_ORDER",
            "GPUBOOK_JOB_KEY",
            "GPUBOOK_X",
        ] {
            assert!(reserved_var(name), "{name}");
        }
        assert!(!reserved_var("WANDB_API_KEY"));
    }
}
