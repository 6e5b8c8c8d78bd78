//! Bookings: who holds which GPUs when, and the job they run there.

use crate::gpu::GpuUuid;
use crate::time::Interval;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A booking's number, unique on its server for the server's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(transparent)]
pub struct BookingId(pub u64);

impl fmt::Display for BookingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a booking is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum BookingState {
    /// Beyond the lab's policy; waits for an admin. Holds no GPUs until approved.
    PendingApproval,
    /// Granted; holds its GPUs for its interval.
    Confirmed,
    /// Its slot has started.
    Active,
    /// Its slot is over (at its end, or released early).
    Ended,
    /// Withdrawn by its owner or an admin before it started.
    Cancelled,
    /// Refused by an admin.
    Denied,
}

impl BookingState {
    /// Whether a booking in this state holds its GPUs for its interval.
    pub fn holds_gpus(self) -> bool {
        matches!(self, Self::Confirmed | Self::Active)
    }

    /// Whether nothing more will happen to the booking.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Ended | Self::Cancelled | Self::Denied)
    }

    /// The name used on the wire, in storage and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingApproval => "pending_approval",
            Self::Confirmed => "confirmed",
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Cancelled => "cancelled",
            Self::Denied => "denied",
        }
    }
}

impl fmt::Display for BookingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job a booking runs in its slot (started and stopped by the agent; see the jobs issue).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct JobSpec {
    /// The command line, run through the owner's login shell.
    pub command: String,
    /// Working directory; the owner's home when absent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Signal sent at the slot's end, e.g. "SIGTERM" (default) or "SIGUSR1" for a checkpoint.
    #[serde(default)]
    pub end_signal: Option<String>,
    /// Seconds between that signal and SIGKILL; 30 when absent.
    #[serde(default)]
    pub grace_secs: Option<u32>,
    /// Keep the rest of the slot when the job ends early (default: release it).
    #[serde(default)]
    pub keep_slot: bool,
    /// Data copied to the server's scratch before the slot starts: a directory name under
    /// `$GPUBOOK_STAGE` → its source (an absolute path on the server or `s3://bucket/prefix`).
    /// Older clients send none.
    #[serde(default)]
    pub stage: BTreeMap<String, String>,
    /// Files kept when the job ends: globs relative to its working directory. Older clients
    /// send none.
    #[serde(default)]
    pub save: Vec<String>,
    /// Where saved files go: a directory on the server or `s3://bucket/prefix`, with
    /// `{server}`, `{id}` and `{owner}` filled in. Older clients send none.
    #[serde(default)]
    pub save_to: Option<String>,
    /// Which of the owner's S3 credentials its copies use (stage and save with `s3://`).
    /// Older clients send none: the `[default]` profile.
    #[serde(default)]
    pub s3: crate::transfer::S3Access,
}

/// The environment variables the agent sets for every job itself; a job may not set them.
/// Every name starting with [`AGENT_ENV_PREFIX`] is the agent's too.
pub const AGENT_ENV: &[&str] = &["CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"];

/// The prefix of the environment variables the agent sets for a job (`GPUBOOK_BOOKING`, ...).
pub const AGENT_ENV_PREFIX: &str = "GPUBOOK_";

/// Whether the agent sets the environment variable `name` for a job itself, so a booking's
/// job may not set it (CUDA_VISIBLE_DEVICES must name exactly the booked GPUs).
pub fn set_by_agent(name: &str) -> bool {
    AGENT_ENV.contains(&name) || name.starts_with(AGENT_ENV_PREFIX)
}

/// The most bytes a booking's title and job may take in JSON, so that a booking always fits a
/// listing page (the wire's frame is at most 1 MiB). Checked when the booking is made.
pub const MAX_BOOKING_BYTES: usize = 64 * 1024;

/// The signals a job may be sent at its slot's end, by canonical name. Anything else is
/// refused when the booking is made.
pub const JOB_SIGNALS: &[&str] = &[
    "SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGKILL",
];

/// The canonical name of a signal written as "SIGTERM", "term" or "USR1", if jobs may get it.
pub fn canonical_signal(name: &str) -> Option<&'static str> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    JOB_SIGNALS.iter().copied().find(|s| &s[3..] == bare)
}

/// How an "as soon as possible" booking was asked for, so the plan can move it earlier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct AsapRequest {
    /// How many GPUs.
    pub count: u32,
    /// Minimum memory per GPU in bytes, if any.
    #[serde(default)]
    pub min_memory: Option<u64>,
    /// How long, in seconds.
    pub duration_secs: i64,
    /// When it was asked: the queue's order.
    pub asked_at: DateTime<Utc>,
    /// The GPUs it names, when it names them; empty for "any `count` GPUs".
    #[serde(default)]
    pub named: Vec<GpuUuid>,
    /// Asked by an admin, so moving it earlier is not held to the policy's limits.
    #[serde(default)]
    pub exempt: bool,
    /// The node it asks for, on a cluster (`GpuSelection::OnNode`); older agents store none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub node: Option<String>,
}

impl AsapRequest {
    /// The requested length (a stored length beyond what a duration can hold reads as the
    /// longest one, which the plan then refuses to place).
    pub fn duration(&self) -> Duration {
        Duration::try_seconds(self.duration_secs).unwrap_or(if self.duration_secs < 0 {
            Duration::MIN
        } else {
            Duration::MAX
        })
    }
}

/// One booking of one or more GPUs of one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Booking {
    /// Its number on the server.
    pub id: BookingId,
    /// User name of the person who holds it.
    pub owner: String,
    /// The booked GPUs, by UUID, in index order.
    pub gpus: Vec<GpuUuid>,
    /// When, half-open and in UTC.
    pub interval: Interval,
    /// What it is for, shown to everyone.
    pub title: String,
    /// Where it is in its life.
    pub state: BookingState,
    /// The job it runs, if any. Shown only to its owner and admins.
    #[serde(default)]
    pub job: Option<JobSpec>,
    /// Set when it came as an "as soon as possible" request.
    #[serde(default)]
    pub asap: Option<AsapRequest>,
    /// Why it waits for approval (the rules it goes beyond), when it does.
    #[serde(default)]
    pub pending_reason: Option<String>,
    /// The `revision` at which it last began to wait for approval; `None` if it never waited.
    /// An approval that names no revision (from an older client) is taken only while the
    /// booking is still at this one. Bookings stored by older agents carry `None`; those
    /// agents made a booking wait only when it was created, so a waiting one of theirs began
    /// to wait at revision 1.
    #[serde(default)]
    pub pending_since: Option<u32>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Raised by one on every change: the iCal SEQUENCE, and a guard against lost updates.
    pub revision: u32,
    /// "Slot starts in 5 minutes" has been announced.
    #[serde(default)]
    pub warned_start: bool,
    /// "Slot ends in 10 minutes" has been announced.
    #[serde(default)]
    pub warned_end: bool,
    /// Its job's run, once the slot started. Added with jobs; absent in older records.
    #[serde(default)]
    pub run: Option<JobRun>,
    /// How its GPUs were used, recorded when the slot ends.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// The slot started; the agent is starting it.
    Starting,
    /// It runs.
    Running,
    /// It ended by itself.
    Finished,
    /// It was stopped at the slot's end.
    Stopped,
    /// It could not be started.
    FailedToStart,
    /// It vanished while the agent was not watching.
    Lost,
}

impl JobState {
    /// Whether the job is over.
    pub fn is_over(self) -> bool {
        !matches!(self, JobState::Starting | JobState::Running)
    }
}

/// A job's run: what the agent started and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct JobRun {
    /// Where it is.
    pub state: JobState,
    /// Its process id on the server.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The process's start time (clock ticks since boot, from /proc): a reused pid is not
    /// mistaken for the job.
    #[serde(default)]
    pub start_ticks: Option<u64>,
    /// When it was started.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    /// Its exit code, when it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// In words: why it failed, or how it was stopped.
    #[serde(default)]
    pub message: Option<String>,
    /// Its log file on the server.
    #[serde(default)]
    pub log: Option<String>,
    /// The bytes of data staged for it (`JobSpec::stage`), as the copy counted them when it
    /// was ready; length suggestions scale by it. Older agents send none.
    #[serde(default)]
    pub staged_bytes: Option<u64>,
    /// The GPUs its job was given, where something other than gpubook picks them (Slurm,
    /// when the job starts): the booking's own GPUs are then only where it is drawn, and
    /// these are the ones its usage and intruders are read on. Older agents send none.
    #[serde(default)]
    pub devices: Vec<GpuUuid>,
}

impl JobRun {
    /// A run just begun: starting, nothing known of it yet.
    pub fn starting() -> Self {
        Self {
            state: JobState::Starting,
            pid: None,
            start_ticks: None,
            started_at: None,
            ended_at: None,
            exit_code: None,
            signal: None,
            message: None,
            log: None,
            staged_bytes: None,
            devices: Vec::new(),
        }
    }
}

/// How a booking's GPUs were used over its slot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Usage {
    /// Mean GPU utilisation over the booked GPUs and the readings, percent.
    pub mean_util: f64,
    /// Highest memory in use on any booked GPU, bytes.
    pub peak_memory: u64,
    /// GPU-seconds in which a booked GPU had a process or load.
    pub gpu_seconds_used: i64,
    /// GPU-seconds booked (GPUs × slot length).
    pub gpu_seconds_booked: i64,
    /// Readings the figures come from.
    pub samples: u64,
}

/// A time to the minute, or to the second when it is not on a minute (a booking that
/// started "now").
fn minutes_or_seconds(t: DateTime<Utc>) -> String {
    use chrono::Timelike;
    let f = if t.second() == 0 {
        "%Y-%m-%d %H:%M"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    t.format(f).to_string()
}

/// What the agent saw, attached to an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Note {
    /// A process of someone other than the booking's owner on one of its GPUs.
    Intruder {
        /// The GPU.
        gpu: GpuUuid,
        /// The process.
        pid: u32,
        /// Its user, when known.
        user: Option<String>,
        /// GPU memory it holds, bytes.
        used_bytes: u64,
        /// Whether the agent stopped it (policy "stop", system mode only).
        stopped: bool,
    },
    /// No process on the booking's GPUs for this long.
    Idle {
        /// Seconds without a process.
        idle_secs: i64,
        /// Whether the policy released the booking.
        released: bool,
    },
    /// The booking's GPUs hold memory but do (almost) nothing, for this long.
    IdleHeld {
        /// The GPU holding the most memory.
        gpu: GpuUuid,
        /// The memory its processes hold, bytes.
        memory_bytes: u64,
        /// The highest utilisation of the booking's GPUs over the stretch, percent.
        util_pct: u32,
        /// Seconds it has been so.
        held_secs: i64,
        /// Whether the policy released the booking.
        released: bool,
    },
    /// How far the copy of its staged data has come (also sent once it is ready).
    Stage {
        /// The stage entry being copied, or "" for all of them at once.
        name: String,
        /// Bytes copied or found already there.
        done_bytes: u64,
        /// Bytes in all, as far as known.
        total_bytes: u64,
        /// Files copied this time.
        copied_files: u64,
        /// Files found already there (same size and modification time), not copied.
        kept_files: u64,
        /// Where the job finds it (`$GPUBOOK_STAGE`).
        dir: String,
        /// At the pace so far the copy ends after the slot starts (the job then waits for
        /// it). Older agents do not send it.
        #[serde(default)]
        late: bool,
    },
    /// A transfer (stage-in or save) failed; `attempts` tries were made.
    TransferFailed {
        /// In words: what failed and why.
        reason: String,
        /// Tries made so far.
        attempts: u32,
    },
    /// Maintenance moved, cancelled or cut this booking short (protocol 1.4); the booking's
    /// own interval is its new time, the event's `before` its old one.
    Maintenance {
        /// Which maintenance period.
        id: crate::maintenance::MaintenanceId,
        /// Why, as the admin gave it ("driver 570") or the fault the agent saw.
        reason: String,
        /// When the GPUs are out of service.
        window: Interval,
        /// What became of the booking.
        outcome: MaintenanceOutcome,
    },
    /// What was saved after the job, and where.
    Saved {
        /// The destination, filled in.
        to: String,
        /// The files.
        files: Vec<SavedFile>,
    },
}

/// What maintenance did to a booking in its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceOutcome {
    /// Moved, whole, to the earliest free start (same GPU count and length).
    Moved,
    /// Cancelled: nothing fitted within the horizon.
    Cancelled,
    /// Running: it now ends at the maintenance's start (its job gets its end signal then).
    CutShort,
    /// Running, and the maintenance starts now: it ended.
    Ended,
}

/// A file saved after a job, its checksum verified at the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct SavedFile {
    /// Its path relative to the job's working directory.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

impl Booking {
    /// GPU-seconds this booking holds inside `window` (exact integer arithmetic).
    pub fn gpu_seconds_within(&self, window: &Interval) -> i64 {
        self.interval
            .intersection(window)
            .map(|i| {
                i.duration()
                    .num_seconds()
                    .saturating_mul(self.gpus.len() as i64)
            })
            .unwrap_or(0)
    }

    /// What it asks for, in words: "2 GPUs (GPU-0, GPU-1) from 2026-03-02 10:00 to
    /// 2026-03-02 14:00 UTC, pending_approval, revision 3". What an admin is told when the
    /// booking changed since they looked.
    pub fn shape(&self) -> String {
        let n = self.gpus.len();
        format!(
            "{n} GPU{} ({}) from {} to {} UTC, {}, revision {}",
            if n == 1 { "" } else { "s" },
            self.gpus
                .iter()
                .map(|g| g.0.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            minutes_or_seconds(self.interval.start),
            minutes_or_seconds(self.interval.end),
            self.state,
            self.revision
        )
    }

    /// The GPUs whose readings say how this booking uses them: its own, or where a scheduler
    /// outside gpubook picks the devices (`picked_outside`: Slurm) the ones its job was given
    /// ([`JobRun::devices`]), none before it has some (its own are only where it is drawn).
    pub fn used_gpus(&self, picked_outside: bool) -> Vec<GpuUuid> {
        match self.run.as_ref().map(|r| &r.devices) {
            Some(devices) if !devices.is_empty() => devices.clone(),
            _ if picked_outside => Vec::new(),
            _ => self.gpus.clone(),
        }
    }

    /// The booking as someone other than its owner or an admin may see it: no job.
    pub fn redacted(&self) -> Booking {
        Booking {
            run: self.run.as_ref().map(|r| JobRun {
                log: None,
                staged_bytes: None,
                ..r.clone()
            }),
            job: self.job.as_ref().map(|_| JobSpec {
                command: String::new(),
                cwd: None,
                env: BTreeMap::new(),
                end_signal: None,
                grace_secs: None,
                keep_slot: false,
                ..JobSpec::default()
            }),
            ..self.clone()
        }
    }
}
