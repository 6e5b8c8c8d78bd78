//! A booking's job run by Slurm: submitted at its slot's start as its owner, inside the
//! booking's reservation, and followed through Slurm's own records until it ends.
//!
//! - Submitted with `sbatch` run as the owner (the same switch of identity as a plain job; the
//!   agent never submits as root): `--reservation=gpubook-<id> --gres=gpu:N --time=<the slot,
//!   in whole minutes> --signal=B:<end signal>@<grace> --job-name=gpubook-<id>`, in the job's
//!   directory (the owner's home when none), its output in `gpubook-<id>.log` there. The
//!   command is in the job's environment (`GPUBOOK_COMMAND`) and run by the owner's login
//!   shell from a fixed wrapper: nothing of it is pasted into a script. Slurm's cgroups confine
//!   it and Slurm sets `CUDA_VISIBLE_DEVICES`.
//! - Followed with `squeue --json --states=all` (one call a second while any job is live):
//!   running → `job_started`; completed or failed → `job_finished` with its exit status, and
//!   the rest of the slot given back unless the booking keeps it; cancelled at or after the
//!   slot's end, or ended by its end signal near it → `job_stopped`; refused by `sbatch` → `job_failed` with Slurm's words.
//! - At the slot's end gpubook cancels what still runs (`scancel`: SIGTERM, then SIGKILL after
//!   Slurm's KillWait); the booking's end signal went out `grace` seconds before the time
//!   limit, from Slurm (`--signal=B:…`): on Slurm the grace comes before the end (at most
//!   half the slot: a 25-s slot with a 30-s grace is signalled half-way, not at its start).
//! - Never twice: before submitting, a job named `gpubook-<id>` of the owner, whose comment
//!   marks this booking (its number and creation time), that Slurm still knows is taken for
//!   the booking's (a crash between `sbatch` and the record); a submitted
//!   job's number is recorded with the booking, and a job Slurm has forgotten (after
//!   MinJobAge) is reported lost, not submitted again.

use super::hold;
use super::json::{Job, JobsReply};
use super::{run, SlurmError};
use crate::identity;
use crate::jobs::{job_vars, owner_command};
use crate::state::State;
use chrono::{DateTime, Utc};
use gpubook_core::{Booking, BookingId, BookingState, ChangeKind, JobRun, JobState};
use std::sync::Arc;
use std::time::Duration;

/// How often Slurm's records are read while a booking's job is live.
pub const POLL: Duration = Duration::from_secs(1);

/// How late Slurm may send a job's `--signal` (it looks every half-minute or so).
const SIGNAL_SLACK_SECS: i64 = 30;

/// What the run's message starts with for a submitted job, before its number.
const SUBMITTED: &str = "Slurm job ";

/// The Slurm job of booking `id` is named this.
pub fn job_name(id: BookingId) -> String {
    hold::name(id)
}

/// What the comment of every job gpubook submits starts with.
pub const MARK_PREFIX: &str = "gpubook booking ";

/// The comment booking `b`'s job carries: its number and when it was made, to the microsecond.
pub fn job_mark(b: &Booking) -> String {
    format!(
        "{MARK_PREFIX}{} made {}",
        b.id,
        b.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

/// The Slurm job number recorded in a run.
pub fn job_number(run: &JobRun) -> Option<u64> {
    let rest = run.message.as_deref()?.strip_prefix(SUBMITTED)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Follows the bookings' jobs of `state` through Slurm until `shutdown`.
pub async fn follow(state: Arc<State>, shutdown: impl std::future::Future<Output = ()>) {
    Arc::new(SlurmJobs::new(state)).run(shutdown).await
}

/// Runs bookings' jobs through Slurm.
#[derive(Debug)]
pub struct SlurmJobs {
    state: Arc<State>,
}

impl SlurmJobs {
    /// A runner over `state`.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    /// Follows the bookings' jobs until `shutdown`: after every change and every [`POLL`].
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut events = self.state.events.subscribe();
        let mut every = tokio::time::interval(POLL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                ev = events.recv() => match ev {
                    Ok(e) if e.booking.job.is_none() => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    _ => {}
                },
                _ = &mut shutdown => return,
            }
            let me = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || me.step()).await {
                eprintln!("gpubook-agent: following the Slurm jobs failed: {e}");
            }
        }
    }

    /// One look: every booking whose job needs something, against Slurm's records.
    pub fn step(&self) {
        let live: Vec<Booking> = {
            let inner = self.state.lock();
            inner
                .plan
                .bookings()
                .filter(|b| b.job.is_some())
                .filter(|b| match b.run.as_ref().map(|r| r.state) {
                    None => matches!(b.state, BookingState::Active | BookingState::Ended),
                    Some(s) => !s.is_over(),
                })
                .cloned()
                .collect()
        };
        if live.is_empty() {
            return;
        }
        let jobs = match read_jobs() {
            Ok(j) => j,
            Err(e) => {
                eprintln!("gpubook-agent: cannot read Slurm's jobs: {e}");
                return;
            }
        };
        let now = self.state.clock.now();
        for b in live {
            let job = find(&jobs, &b);
            self.follow(&b, job, now);
        }
    }

    fn follow(&self, b: &Booking, job: Option<&Job>, now: DateTime<Utc>) {
        let run = b.run.clone();
        let state = run.as_ref().map(|r| r.state);
        match (b.state, state, job) {
            (BookingState::Active, None, None) => self.submit(b, now),
            (_, None | Some(JobState::Starting), None)
                if run.as_ref().is_some_and(|r| job_number(r).is_some()) =>
            {
                self.record(b, ChangeKind::JobLost, |r| {
                    r.state = JobState::Lost;
                    r.ended_at = Some(now);
                    r.message = Some(format!(
                        "{} is no longer known to Slurm (its records are kept for MinJobAge)",
                        r.message.clone().unwrap_or_default()
                    ));
                })
            }
            (BookingState::Ended, None, None) => self.record(b, ChangeKind::JobFailed, |r| {
                r.state = JobState::FailedToStart;
                r.message = Some("its slot ended before the agent could start it".into());
            }),
            (_, _, Some(job)) => self.observe(b, job, now),
            _ => {}
        }
    }

    /// What Slurm says of booking `b`'s job, recorded once per change.
    fn observe(&self, b: &Booking, job: &Job, now: DateTime<Utc>) {
        let state = b.run.as_ref().map(|r| r.state);
        let number = job.job_id;
        let over = b.state.is_final();
        match job.job_state.as_str() {
            "PENDING" | "CONFIGURING" | "REQUEUED" | "RESIZING" | "SUSPENDED" => {
                if state.is_none() {
                    self.record(b, ChangeKind::JobStarted, |r| {
                        r.state = JobState::Starting;
                        r.message = Some(format!("{SUBMITTED}{number} (pending)"));
                    });
                }
                if over {
                    cancel(number);
                }
            }
            "RUNNING" | "COMPLETING" => {
                if state != Some(JobState::Running) {
                    let started = from_unix(job.start_time).unwrap_or(now);
                    let node = job.nodes.clone();
                    self.record(b, ChangeKind::JobStarted, |r| {
                        r.state = JobState::Running;
                        r.started_at = Some(started);
                        r.devices = job
                            .gpu_indexes()
                            .into_iter()
                            .map(|i| super::reader::uuid(&node, i))
                            .collect();
                        r.message = Some(format!("{SUBMITTED}{number} running on {}", job.nodes));
                    });
                }
                if over {
                    cancel(number);
                }
            }
            "COMPLETED" | "FAILED" | "OUT_OF_MEMORY" | "NODE_FAIL" | "BOOT_FAIL" => {
                let (code, signal) = wait_status(job.exit_code_raw());
                let ended = from_unix(job.end_time).unwrap_or(now);
                if signal.is_some() && signal == self.end_signal_near(b, ended) {
                    self.record(b, ChangeKind::JobStopped, |r| {
                        r.state = JobState::Stopped;
                        r.ended_at = Some(ended);
                        r.signal = signal;
                        r.message = Some(format!(
                            "{SUBMITTED}{number} ended on its end signal before its slot's end"
                        ));
                    });
                    return;
                }
                let words = match job.job_state.as_str() {
                    "COMPLETED" | "FAILED" => String::new(),
                    s => format!(" ({s})"),
                };
                self.record(b, ChangeKind::JobFinished, |r| {
                    r.state = JobState::Finished;
                    r.ended_at = Some(ended);
                    r.exit_code = code;
                    r.signal = signal;
                    r.message = Some(match (code, signal) {
                        (_, Some(s)) => format!("{SUBMITTED}{number} killed by signal {s}{words}"),
                        (Some(c), None) => format!("{SUBMITTED}{number} exited with {c}{words}"),
                        (None, None) => format!("{SUBMITTED}{number} ended{words}"),
                    });
                });
                self.give_back(b);
            }
            // Cancelled or timed out: at the slot's end (by gpubook or its time limit), stopped;
            // before it, by someone in Slurm, it ended.
            other => {
                let ended = from_unix(job.end_time).unwrap_or(now);
                if over || ended >= b.interval.end || other == "TIMEOUT" {
                    self.record(b, ChangeKind::JobStopped, |r| {
                        r.state = JobState::Stopped;
                        r.ended_at = Some(ended);
                        r.message = Some(format!(
                            "{SUBMITTED}{number} stopped at the end of its slot"
                        ));
                    });
                } else {
                    self.record(b, ChangeKind::JobFinished, |r| {
                        r.state = JobState::Finished;
                        r.ended_at = Some(ended);
                        r.message = Some(format!(
                            "{SUBMITTED}{number} {} in Slurm",
                            other.to_lowercase()
                        ));
                    });
                    self.give_back(b);
                }
            }
        }
    }

    /// The booking's end signal if `ended` is when Slurm sends it: within its grace (and
    /// Slurm's half-minute of slack in sending it) of the slot's end. A job that ends on it
    /// there was stopped at its end, not finished.
    fn end_signal_near(&self, b: &Booking, ended: DateTime<Utc>) -> Option<i32> {
        let max_grace = self.state.lock().plan.policy().max_grace_secs;
        let (signal, _, grace) = crate::jobs::end_signal(b, max_grace);
        let grace = chrono::Duration::from_std(grace).unwrap_or_default();
        let slack = chrono::Duration::seconds(SIGNAL_SLACK_SECS);
        (ended >= b.interval.end - grace - slack).then_some(signal)
    }

    /// Submits booking `b`'s job as its owner; `job_failed` with Slurm's words when refused.
    fn submit(&self, b: &Booking, now: DateTime<Utc>) {
        let max_grace = self.state.lock().plan.policy().max_grace_secs;
        match submit(b, now, max_grace) {
            Ok((number, log)) => self.record(b, ChangeKind::JobStarted, |r| {
                r.state = JobState::Starting;
                r.log = Some(log);
                r.message = Some(format!("{SUBMITTED}{number} (submitted)"));
            }),
            Err(why) => self.record(b, ChangeKind::JobFailed, |r| {
                r.state = JobState::FailedToStart;
                r.ended_at = Some(now);
                r.message = Some(why);
            }),
        }
    }

    fn record(&self, b: &Booking, kind: ChangeKind, update: impl FnOnce(&mut JobRun)) {
        let mut run = b.run.clone().unwrap_or_else(JobRun::starting);
        update(&mut run);
        if let Err(e) = self
            .state
            .observe(b.id, kind, None, move |b| b.run = Some(run))
        {
            eprintln!(
                "gpubook-agent: cannot record the Slurm job of booking {}: {e}; tried again",
                b.id
            );
        }
    }

    /// The rest of the slot goes back after the job ended early, unless the booking keeps it.
    fn give_back(&self, b: &Booking) {
        if b.job.as_ref().is_some_and(|j| j.keep_slot) {
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
}

/// Every job Slurm keeps (`squeue --json --states=all`).
pub(super) fn read_jobs() -> Result<Vec<Job>, SlurmError> {
    let out = run("squeue", &["--json", "--states=all"])?;
    let reply: JobsReply = serde_json::from_str(&out).map_err(|e| SlurmError::Output {
        command: "squeue --json".into(),
        why: e.to_string(),
    })?;
    Ok(reply.jobs)
}

/// Booking `b`'s job among `jobs`: the recorded number, else its name and owner (the newest).
fn find<'a>(jobs: &'a [Job], b: &Booking) -> Option<&'a Job> {
    if let Some(n) = b.run.as_ref().and_then(job_number) {
        return jobs.iter().find(|j| j.job_id == n);
    }
    // Marked for this booking: a booking of the same number from another agent's store (a
    // reinstall) was made at another time.
    let name = job_name(b.id);
    let mark = job_mark(b);
    jobs.iter()
        .filter(|j| j.name == name && j.user_name == b.owner && j.comment == mark)
        .max_by_key(|j| j.job_id)
}

/// Cancels Slurm job `number` (SIGTERM, then SIGKILL after KillWait).
fn cancel(number: u64) {
    if let Err(e) = run("scancel", &[&number.to_string()]) {
        eprintln!("gpubook-agent: cannot cancel Slurm job {number}: {e}");
    }
}

/// Exit code and signal from a wait status as Slurm keeps it (768: exit 3; 9: SIGKILL).
pub fn wait_status(raw: Option<i64>) -> (Option<i32>, Option<i32>) {
    match raw {
        None => (None, None),
        Some(s) if s & 0x7f != 0 => (None, Some((s & 0x7f) as i32)),
        Some(s) => (Some(((s >> 8) & 0xff) as i32), None),
    }
}

/// Half of what is left of `b`'s slot at `now`, in whole seconds.
fn half_slot(b: &Booking, now: DateTime<Utc>) -> u64 {
    u64::try_from((b.interval.end - now).num_seconds() / 2).unwrap_or(0)
}

fn from_unix(secs: i64) -> Option<DateTime<Utc>> {
    (secs > 0)
        .then(|| DateTime::from_timestamp(secs, 0))
        .flatten()
}

/// Runs `sbatch` as `b`'s owner; the job's number and its log's path, or why not.
fn submit(b: &Booking, now: DateTime<Utc>, max_grace_secs: i64) -> Result<(u64, String), String> {
    let job = b.job.as_ref().ok_or("the booking has no job")?;
    let account = identity::account(&b.owner)
        .ok_or_else(|| format!("{} is not a user of this host", b.owner))?;
    let dir = job.cwd.clone().unwrap_or_else(|| account.home.clone());
    let log = format!("{}/gpubook-{}.log", dir.trim_end_matches('/'), b.id);
    let minutes = ((b.interval.end - now).num_seconds().max(1) + 59) / 60;
    let (_, signal, grace) = crate::jobs::end_signal(b, max_grace_secs);
    // Slurm signals `grace` before the limit: a slot shorter than twice the grace is warned
    // half-way, not at its start.
    let grace = grace.as_secs().min(half_slot(b, now));
    let args = sbatch_args(b, &dir, &log, minutes, &signal, grace);
    let switch = identity::current_uid() == 0 && account.uid != 0;
    let mut cmd = owner_command(std::path::Path::new("sbatch"), &b.owner, &account, switch);
    cmd.args(&args)
        .env("SHELL", crate::jobs::login_shell(&account))
        .env("GPUBOOK_COMMAND", &job.command)
        .env("TZ", "UTC")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(conf) = std::env::var_os("SLURM_CONF") {
        cmd.env("SLURM_CONF", conf);
    }
    for (k, v) in job_vars(b) {
        if !k.starts_with("CUDA_") {
            cmd.env(k, v);
        }
    }
    for (k, v) in &job.env {
        cmd.env(k, v);
    }
    let out = tokio::runtime::Handle::current()
        .block_on(cmd.output())
        .map_err(|e| format!("sbatch could not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "Slurm refused the job: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let number = text
        .trim()
        .split(';')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("sbatch answered {:?}, not a job number", text.trim()))?;
    Ok((number, log))
}

/// `sbatch`'s arguments for booking `b`.
pub fn sbatch_args(
    b: &Booking,
    dir: &str,
    log: &str,
    minutes: i64,
    signal: &str,
    grace_secs: u64,
) -> Vec<String> {
    let signal = signal.trim_start_matches("SIG");
    vec![
        "--parsable".into(),
        format!("--job-name={}", job_name(b.id)),
        format!("--comment={}", job_mark(b)),
        format!("--reservation={}", hold::name(b.id)),
        format!("--gres=gpu:{}", b.gpus.len()),
        format!("--time={minutes}"),
        format!("--signal=B:{signal}@{grace_secs}"),
        format!("--chdir={dir}"),
        format!("--output={log}"),
        "--export=ALL".into(),
        // A fixed wrapper: the command stays in the environment, run by the owner's shell.
        "--wrap=exec \"$SHELL\" -c \"$GPUBOOK_COMMAND\"".into(),
    ]
}

/// Up to `max` bytes from `offset` of the log at `path` (none yet: empty), read by a `dd` run
/// as `owner`: the log lies in the owner's directory, so the root agent never opens it itself
/// (a link there to a file the owner may not read is refused as it would be to them).
pub async fn read_log(
    owner: &str,
    path: Option<&str>,
    offset: u64,
    max: u64,
) -> std::io::Result<Vec<u8>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let account = identity::account(owner).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{owner} is not a user of this host"),
        )
    })?;
    let switch = identity::current_uid() == 0 && account.uid != 0;
    let out = owner_command(std::path::Path::new("dd"), owner, &account, switch)
        .args([
            format!("if={path}"),
            "iflag=skip_bytes,count_bytes".into(),
            format!("skip={offset}"),
            format!("count={max}"),
            "bs=65536".into(),
            "status=none".into(),
        ])
        .output()
        .await?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let words = String::from_utf8_lossy(&out.stderr);
    if words.contains("No such file") {
        return Ok(Vec::new());
    }
    Err(std::io::Error::other(words.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_as_slurm_keeps_them() {
        assert_eq!(wait_status(Some(0)), (Some(0), None));
        assert_eq!(wait_status(Some(768)), (Some(3), None));
        assert_eq!(wait_status(Some(9)), (None, Some(9)));
        assert_eq!(wait_status(None), (None, None));
    }

    #[test]
    fn the_job_number_from_the_run() {
        let mut run = JobRun {
            message: Some("Slurm job 42 (submitted)".into()),
            ..JobRun::starting()
        };
        assert_eq!(job_number(&run), Some(42));
        run.message = Some("the command could not run".into());
        assert_eq!(job_number(&run), None);
    }
}
