//! Data around a job: its sources staged into the server's scratch before the slot starts,
//! and its results saved when it ends. Every copy runs in a child process as the booking's
//! owner (`gpubook-agent transfer`, see [`child`]), never in the root agent: a file the owner
//! may not read is refused to them. The agent only makes the owner's directory under the
//! policy's `scratch` and turns the child's lines into events.
//!
//! When: a booking's stage starts as soon as its slot is at most [`STAGE_AHEAD`] away (at
//! booking time for a slot that soon), or earlier where the time it will take, from the size
//! last staged from that source and the throughput measured then (kept in
//! `STATE_DIR/stage-history.json`), with a margin, says so. Results are saved on the job's
//! `job_finished` or `job_stopped` event; a failure is tried again with back-off. When a
//! booking is over (and its job too), its `booking-N` directory of links is removed as the
//! owner; the cached data stays for the next booking, under the quota.

pub mod child;
mod copy;
pub mod credentials;
mod history;
mod s3;
mod save;

use crate::identity;
use crate::jobs::owner_command;
use crate::state::State;
use child::{Line, Progress, SaveTask, StageTask, Task};
use gpubook_core::{Booking, BookingId, BookingState, ChangeKind, Note};
use gpubook_proto::EventKind;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::sync::broadcast;

/// Slots starting within this are staged at once.
pub const STAGE_AHEAD: chrono::TimeDelta = chrono::TimeDelta::hours(12);
/// How often bookings are looked over for a stage that is due.
const PATROL: Duration = Duration::from_secs(1);
/// A progress event at most this often per booking.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Tries of a save before it is given up and notified.
pub const SAVE_TRIES: u32 = 4;

/// Where a booking's stage is, as the job runner asks before starting its job: one still
/// copying holds the job back until `stage_ready`; one that failed fails the job's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageState {
    /// Being copied.
    Copying,
    /// In place: this many bytes (recorded on the job's run, so length suggestions scale).
    Ready {
        /// The staged data's size.
        bytes: u64,
    },
    /// Could not be staged: why.
    Failed(String),
}

/// The stage of each booking this agent staged, shared with the job runner. A plain mutex:
/// never held across an await.
pub type StageStates = Arc<Mutex<HashMap<BookingId, StageState>>>;

/// The stage and save runner.
#[derive(Debug)]
pub struct Transfers {
    /// The shared state.
    state: Arc<State>,
    /// This agent's binary: the copy child.
    exe: PathBuf,
    /// The server's name, for `{server}` in save destinations.
    server: String,
    /// Sizes and throughput of earlier stages.
    history: history::History,
    /// Bookings whose stage was started (by this agent's run), so it runs once, and where it is.
    staged: StageStates,
    /// Bookings whose results were saved or are being saved.
    saved: Mutex<HashSet<BookingId>>,
    /// One stage at a time per owner: two bookings of the same data never fill one cache
    /// entry at once, and eviction never runs beside a copy.
    owner_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// First back-off between save tries (doubled each time).
    save_backoff: Duration,
}

impl Transfers {
    /// A runner over `state`; its history under `state_dir`.
    pub fn new(state: Arc<State>, server: String, state_dir: &Path, staged: StageStates) -> Self {
        let save_backoff = std::env::var("GPUBOOK_SAVE_BACKOFF_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(5), Duration::from_millis);
        Self {
            state,
            exe: std::env::current_exe().unwrap_or_else(|_| "gpubook-agent".into()),
            server,
            history: history::History::new(state_dir.join("stage-history.json")),
            staged,
            saved: Mutex::new(HashSet::new()),
            owner_locks: Mutex::new(HashMap::new()),
            save_backoff,
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut events = self.state.events.subscribe();
        let mut patrol = tokio::time::interval(PATROL);
        patrol.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = patrol.tick() => self.patrol(),
                ev = events.recv() => match ev {
                    Ok(e) if matches!(e.kind, EventKind::JobFinished | EventKind::JobStopped) => {
                        self.save(&e.booking);
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = &mut shutdown => return,
            }
        }
    }

    /// Starts every stage that is due.
    fn patrol(self: &Arc<Self>) {
        let now = self.state.clock.now();
        let due: Vec<Booking> = {
            let inner = self.state.lock();
            let staged = self.staged.lock().unwrap();
            inner
                .plan
                .bookings()
                .filter(|b| matches!(b.state, BookingState::Confirmed | BookingState::Active))
                .filter(|b| b.job.as_ref().is_some_and(|j| !j.stage.is_empty()))
                .filter(|b| !staged.contains_key(&b.id))
                .filter(|b| b.interval.start - now <= self.lead(b))
                .cloned()
                .collect()
        };
        self.tidy_ended();
        for b in due {
            self.staged
                .lock()
                .unwrap()
                .insert(b.id, StageState::Copying);
            let me = self.clone();
            tokio::spawn(async move { me.stage(b).await });
        }
    }

    /// Forgets the stages of bookings that are over (their jobs too) and removes their
    /// `booking-N` link directories, as each owner, in the background. Directories left by
    /// an earlier run of the agent go with the next booking of the same owner that ends.
    fn tidy_ended(self: &Arc<Self>) {
        let (scratch, by_owner) = {
            let inner = self.state.lock();
            let mut staged = self.staged.lock().unwrap();
            let over = |b: &Booking| {
                b.state.is_final() && b.run.as_ref().is_none_or(|r| r.state.is_over())
            };
            let ended: Vec<BookingId> = staged
                .keys()
                .filter(|id| inner.plan.get(**id).is_none_or(over))
                .copied()
                .collect();
            let mut by_owner: HashMap<String, Vec<u64>> = HashMap::new();
            for id in ended {
                staged.remove(&id);
                if let Some(b) = inner.plan.get(id) {
                    by_owner.entry(b.owner.clone()).or_default();
                }
            }
            for (owner, keep) in by_owner.iter_mut() {
                keep.extend(
                    inner
                        .plan
                        .bookings()
                        .filter(|b| &b.owner == owner && !over(b))
                        .map(|b| b.id.0),
                );
            }
            (inner.plan.policy().scratch.clone(), by_owner)
        };
        for (owner, keep) in by_owner {
            let me = self.clone();
            let owner_dir = Path::new(&scratch).join(&owner);
            tokio::spawn(async move {
                let lock = me
                    .owner_locks
                    .lock()
                    .unwrap()
                    .entry(owner.clone())
                    .or_default()
                    .clone();
                let _one_at_a_time = lock.lock().await;
                let task = Task::Tidy(child::TidyTask { owner_dir, keep });
                if let Err(why) = me.run_child(&owner, &task, |_| {}).await {
                    eprintln!("gpubook-agent: cannot tidy {owner}'s staged links: {why}");
                }
            });
        }
    }

    /// How long before its start a booking's stage begins.
    fn lead(&self, b: &Booking) -> chrono::TimeDelta {
        let sources = b.job.iter().flat_map(|j| j.stage.values());
        STAGE_AHEAD.max(self.history.estimate(sources) * 2 + chrono::TimeDelta::minutes(30))
    }

    /// `$GPUBOOK_STAGE` of booking `b`.
    pub fn stage_dir(scratch: &str, b: &Booking) -> PathBuf {
        Path::new(scratch)
            .join(&b.owner)
            .join(format!("booking-{}", b.id))
    }

    async fn stage(self: Arc<Self>, b: Booking) {
        let (scratch, quota, pinned) = {
            let inner = self.state.lock();
            let p = inner.plan.policy();
            let pinned: Vec<String> = inner
                .plan
                .bookings()
                .filter(|o| o.owner == b.owner && !o.state.is_final())
                .flat_map(|o| o.job.iter().flat_map(|j| j.stage.values()))
                .map(|s| copy::cache_key(s))
                .collect();
            (p.scratch.clone(), p.stage_quota_bytes, pinned)
        };
        let dir = Self::stage_dir(&scratch, &b);
        let job = b.job.clone().unwrap_or_default();
        let task = |owner_dir: PathBuf| {
            Task::Stage(StageTask {
                owner_dir,
                booking_dir: dir.clone(),
                entries: job.stage.clone().into_iter().collect(),
                quota,
                pinned,
                s3: job.s3.clone(),
            })
        };
        let dir_text = dir.display().to_string();
        let mut last = std::time::Instant::now() - PROGRESS_EVERY;
        let mut warned = false;
        let progress = |p: &Progress, late: bool| Note::Stage {
            name: p.name.clone(),
            done_bytes: p.done_bytes,
            total_bytes: p.total_bytes,
            copied_files: p.copied_files,
            kept_files: p.kept_files,
            dir: dir_text.clone(),
            late,
        };
        let lock = self
            .owner_locks
            .lock()
            .unwrap()
            .entry(b.owner.clone())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        let began = std::time::Instant::now();
        let result = match owner_dir(&scratch, &b.owner) {
            Err(e) => Err(e),
            Ok(owner_dir) => {
                self.run_child(&b.owner, &task(owner_dir), |line| {
                    if let Line::Progress(p) = line {
                        let now = self.state.clock.now();
                        let late = late(p, began.elapsed(), now, b.interval.start);
                        // A copy found late is told at once, once; the rest every 2 s.
                        if last.elapsed() >= PROGRESS_EVERY || (late && !warned) {
                            last = std::time::Instant::now();
                            warned |= late;
                            self.note(b.id, ChangeKind::StageProgress, progress(p, late));
                        }
                    }
                })
                .await
            }
        };
        let result = match result {
            Ok(Some(Line::Staged(p))) => Ok(p),
            Ok(_) => Err("the copy said nothing".to_string()),
            Err(why) => Err(why),
        };
        // Set before the event goes out: the job runner starts the job on it.
        let state = match &result {
            Ok(p) => StageState::Ready {
                bytes: p.total_bytes,
            },
            Err(why) => StageState::Failed(why.clone()),
        };
        self.staged.lock().unwrap().insert(b.id, state);
        match result {
            Ok(p) => {
                let copied = if p.copied_files > 0 { p.done_bytes } else { 0 };
                self.history
                    .record(&job.stage, p.total_bytes, copied, began.elapsed());
                self.note(b.id, ChangeKind::StageReady, progress(&p, false));
            }
            Err(why) => self.failed(b.id, ChangeKind::StageFailed, why, 1),
        }
    }

    /// Saves the results of `b`'s job, once, trying again with back-off.
    fn save(self: &Arc<Self>, b: &Booking) {
        let Some(job) = b.job.clone().filter(|j| !j.save.is_empty()) else {
            return;
        };
        let Some(template) = job.save_to.clone() else {
            return;
        };
        if !self.saved.lock().unwrap().insert(b.id) {
            return;
        }
        let Some(account) = identity::account(&b.owner) else {
            let why = format!("there is no user {} on this server", b.owner);
            return self.failed(b.id, ChangeKind::SaveFailed, why, 1);
        };
        let to = gpubook_core::transfer::fill_save_to(&template, &self.server, b.id.0, &b.owner);
        let task = Task::Save(SaveTask {
            cwd: job.cwd.clone().unwrap_or(account.home),
            globs: job.save.clone(),
            to: to.clone(),
            s3: job.s3.clone(),
        });
        let (me, id, owner) = (self.clone(), b.id, b.owner.clone());
        tokio::spawn(async move {
            let mut wait = me.save_backoff;
            for attempt in 1..=SAVE_TRIES {
                match me.run_child(&owner, &task, |_| {}).await {
                    Ok(Some(Line::Saved(files))) => {
                        return me.note(id, ChangeKind::JobSaved, Note::Saved { to, files });
                    }
                    Ok(_) => {}
                    Err(why) if attempt == SAVE_TRIES => {
                        let why = format!("saving to {to}: {why}");
                        return me.failed(id, ChangeKind::SaveFailed, why, attempt);
                    }
                    Err(why) => eprintln!(
                        "gpubook-agent: saving booking {id}'s results failed (try {attempt} of \
                         {SAVE_TRIES}): {why}; trying again in {} s",
                        wait.as_secs_f64()
                    ),
                }
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        });
    }

    /// Runs the copy child as `owner`; `line` sees each line; the last line, or why it failed.
    async fn run_child(
        &self,
        owner: &str,
        task: &Task,
        line: impl FnMut(&Line),
    ) -> Result<Option<Line>, String> {
        run_as(&self.exe, owner, task, line).await
    }

    fn note(&self, id: BookingId, kind: ChangeKind, note: Note) {
        if let Err(e) = self.state.observe(id, kind, Some(note), |_| {}) {
            eprintln!("gpubook-agent: cannot record {kind:?} of booking {id}: {e}");
        }
    }

    fn failed(&self, id: BookingId, kind: ChangeKind, reason: String, attempts: u32) {
        self.note(id, kind, Note::TransferFailed { reason, attempts });
    }
}

/// Runs the copy child (`exe transfer`) as `owner`; `line` sees each line; the last line, or why it failed.
pub async fn run_as(
    exe: &Path,
    owner: &str,
    task: &Task,
    mut line: impl FnMut(&Line),
) -> Result<Option<Line>, String> {
    let account = identity::account(owner)
        .ok_or_else(|| format!("there is no user {owner} on this server"))?;
    let own_uid = identity::current_uid();
    if own_uid != 0 && account.uid != own_uid {
        return Err(format!(
            "this agent runs in personal mode as uid {own_uid}: it cannot copy for {owner}"
        ));
    }
    let arg = serde_json::to_string(task).map_err(|e| e.to_string())?;
    let mut child = owner_command(exe, owner, &account, own_uid == 0)
        .arg("transfer")
        .arg(arg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the copy as {owner}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no output from the copy")?;
    let mut stderr = child.stderr.take().ok_or("no output from the copy")?;
    let err_text = tokio::spawn(async move {
        let mut s = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut s).await;
        s
    });
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut last = None;
    while let Ok(Some(text)) = lines.next_line().await {
        if let Ok(l) = serde_json::from_str::<Line>(&text) {
            line(&l);
            last = Some(l);
        }
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    let err = err_text.await.unwrap_or_default();
    if status.success() {
        Ok(last)
    } else {
        Err(match err.trim() {
            "" => format!("the copy ended with {status}"),
            e => e.to_string(),
        })
    }
}

/// Longest a length suggestion waits for the size of the data to stage.
pub const MEASURE_FOR: Duration = Duration::from_secs(20);

/// The bytes under `sources`, counted by the copy child as `owner` (so a source they may not
/// read is refused to them); `Ok(None)` when counting takes longer than [`MEASURE_FOR`].
pub async fn measure(
    owner: &str,
    sources: Vec<String>,
    s3: gpubook_core::S3Access,
) -> Result<Option<u64>, String> {
    let exe = std::env::current_exe().unwrap_or_else(|_| "gpubook-agent".into());
    let task = Task::Measure(child::MeasureTask { sources, s3 });
    match tokio::time::timeout(MEASURE_FOR, run_as(&exe, owner, &task, |_| {})).await {
        Err(_) => Ok(None),
        Ok(Ok(Some(Line::Measured(bytes)))) => Ok(Some(bytes)),
        Ok(Ok(_)) => Err("the count said nothing".into()),
        Ok(Err(why)) => Err(why),
    }
}

/// Whether, at the pace of the copy so far, it ends after `start` (judged after a few seconds
/// of copying, so a slow first file does not cry wolf).
fn late(
    p: &Progress,
    took: Duration,
    now: chrono::DateTime<chrono::Utc>,
    start: chrono::DateTime<chrono::Utc>,
) -> bool {
    let secs = took.as_secs_f64();
    if secs < 3.0 || p.done_bytes == 0 {
        return false;
    }
    let left = p.total_bytes.saturating_sub(p.done_bytes) as f64 / (p.done_bytes as f64 / secs);
    now + chrono::TimeDelta::milliseconds((left * 1000.0) as i64) > start
}

/// An event as `viewer` may see it: the booking through [`crate::handler::visible`], and a
/// stage or save note (paths, file names, destinations, reasons) only for its owner and
/// admins — others see that it happened, not what was copied where.
pub fn visible_event(
    viewer: &gpubook_core::Actor,
    mut e: gpubook_proto::Event,
) -> gpubook_proto::Event {
    let own = viewer.role == gpubook_core::Role::Admin || viewer.user == e.booking.owner;
    let private = matches!(
        e.note,
        Some(Note::Stage { .. } | Note::TransferFailed { .. } | Note::Saved { .. })
    );
    if private && !own {
        e.note = None;
    }
    e.booking = crate::handler::visible(viewer, e.booking);
    e
}

/// `<scratch>/<owner>`, made by the agent and given to the owner; refused when it is anything
/// but a directory of theirs (a link planted there is never followed).
fn owner_dir(scratch: &str, owner: &str) -> Result<PathBuf, String> {
    let account = identity::account(owner)
        .ok_or_else(|| format!("there is no user {owner} on this server"))?;
    let root = Path::new(scratch);
    if !root.exists() {
        std::fs::create_dir_all(root)
            .map_err(|e| format!("cannot create the scratch directory {scratch}: {e}"))?;
        let _ = std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755));
    }
    let dir = root.join(owner);
    match std::fs::symlink_metadata(&dir) {
        Err(_) => {
            std::fs::create_dir(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| e.to_string())?;
            if identity::current_uid() == 0 {
                std::os::unix::fs::lchown(&dir, Some(account.uid), Some(account.gid))
                    .map_err(|e| format!("cannot give {} to {owner}: {e}", dir.display()))?;
            }
        }
        Ok(m) if m.is_dir() && m.uid() == account.uid => {}
        Ok(_) => {
            return Err(format!(
                "{} is not a directory of {owner}'s; an admin should remove it",
                dir.display()
            ))
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_late_when_its_pace_ends_it_after_the_start() {
        let now = chrono::Utc::now();
        let p = Progress {
            done_bytes: 100,
            total_bytes: 1100,
            ..Progress::default()
        };
        // 100 bytes in 10 s: 100 s to go.
        let took = Duration::from_secs(10);
        assert!(late(&p, took, now, now + chrono::TimeDelta::seconds(60)));
        assert!(!late(&p, took, now, now + chrono::TimeDelta::seconds(120)));
        // Too soon to judge.
        assert!(!late(&p, Duration::from_secs(1), now, now));
    }
}
