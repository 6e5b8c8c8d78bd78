//! The lab's policy, from a TOML file the admin writes: who is admin, user or guest (by user
//! name or Unix group), and the limits on bookings.
//!
//! ```toml
//! # /etc/gpubook/policy.toml
//! default_role = "user"            # role of anyone not listed below
//! admins = ["alice", "group:gpu-admins"]
//! guests = ["group:students"]
//! granularity = "15m"              # bookings snap to this grid
//! max_booking = "24h"              # longest single booking
//! max_ahead = "14d"                # how far ahead a booking may start
//! weekly_quota_gpu_hours = 200     # per user, Monday 00:00 UTC to Monday
//! max_gpus_at_once = 4             # per user, at any moment
//! over_policy = "approval"         # or "refuse"
//! intruders = "warn"               # or "stop": a process on a booked GPU that is not the
//!                                  # owner's is announced; "stop" also sends it SIGTERM
//!                                  # (only when the agent runs as root, system mode)
//! idle_after = "30m"               # a started booking with no process on its GPUs this
//!                                  # long is announced (absent: never)
//! release_idle = false             # and then released, so the queue moves up
//! idle_held_after = "30m"          # a started booking whose GPUs hold memory (a process)
//!                                  # below `idle_held_below` % utilisation this long is
//!                                  # announced to its owner ("off": never; default 30m)
//! idle_held_below = 5              # percent
//! release_idle_held = false        # and then released
//! end_warning = "10m"              # owners are warned this long before a slot ends
//! max_grace = "5m"                 # longest grace a job may ask between its end signal
//!                                  # and SIGKILL (everyone, admins included)
//! max_log = "1G"                   # a job's log is cut at this size (K, M, G, T: binary)
//! max_pending = 20                 # requests one user may have waiting for approval
//! max_upcoming = 500               # bookings one user may hold that have not ended
//! scratch = "/scratch/gpubook"     # where staged data is kept, one directory per owner
//! stage_quota = "500G"             # staged data each owner may keep there; least recently
//!                                  # used copies are removed beyond it (K, M, G, T: binary)
//!
//! [mail]                           # how the agent sends people's notifications by e-mail
//! server = "smtp.lab.org"          # (absent: no e-mail; see `mail`)
//! port = 587
//! tls = "starttls"                 # or "tls" (implicit, port 465) or "none"
//! sender = "gpubook <gpubook@lab.org>"
//! credentials_file = "/etc/gpubook/smtp-credentials"   # root's alone: user, then password
//! ```
//!
//! Every duration is more than zero and at most [`MAX_POLICY_DAYS`] days (the grid divides a
//! day, `max_grace` is at most a day), so no later arithmetic on them can overflow.

mod file;
pub mod mail;

use crate::duration::format_duration;
use crate::size::format_size;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// What a person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Changes any booking, approves and denies, is not held to the limits.
    Admin,
    /// Books within the policy and changes their own bookings.
    User,
    /// Reads only.
    Guest,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Guest => "guest",
        })
    }
}

/// Who is asking, as the agent established it (never as the request claims).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Unix user name.
    pub user: String,
    /// Role under the policy.
    pub role: Role,
}

/// A policy rule a request can go beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// `max_booking`.
    MaxBooking,
    /// `max_ahead`.
    MaxAhead,
    /// `weekly_quota_gpu_hours`.
    WeeklyQuota,
    /// `max_gpus_at_once`.
    MaxGpusAtOnce,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::MaxBooking => "max_booking",
            Rule::MaxAhead => "max_ahead",
            Rule::WeeklyQuota => "weekly_quota_gpu_hours",
            Rule::MaxGpusAtOnce => "max_gpus_at_once",
        })
    }
}

/// What happens to a request beyond the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum OverPolicy {
    /// It waits for an admin's approval.
    Approval,
    /// It is refused, naming the rule.
    Refuse,
}

/// What the agent does about a process on a booked GPU that is not the booking owner's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum IntruderPolicy {
    /// Announce it to the owner and the admins.
    #[default]
    Warn,
    /// Announce it and send it SIGTERM (only where the agent runs as root).
    Stop,
}

/// The lab's policy. Every limit on bookings is optional (absent means no limit); the bounds on
/// jobs and on waiting requests (`max_grace`, `max_log`, `max_pending`) have defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Policy {
    /// Role of a person the lists do not name.
    pub default_role: Role,
    /// Admins: user names, or "group:NAME" for members of a Unix group.
    pub admins: Vec<String>,
    /// Guests, the same way.
    pub guests: Vec<String>,
    /// Users, the same way (useful when `default_role` is guest).
    pub users: Vec<String>,
    /// Bookings snap to this grid (seconds).
    pub granularity_secs: i64,
    /// Longest single booking (seconds).
    pub max_booking_secs: Option<i64>,
    /// How far ahead a booking may start (seconds).
    pub max_ahead_secs: Option<i64>,
    /// GPU-hours per user per week.
    pub weekly_quota_gpu_hours: Option<u32>,
    /// GPUs one user may hold at any moment.
    pub max_gpus_at_once: Option<u32>,
    /// What happens beyond these limits.
    pub over_policy: OverPolicy,
    /// What happens to an intruder on a booked GPU. Older agents do not send it: warn.
    #[serde(default)]
    pub intruders: IntruderPolicy,
    /// Seconds without a process on a started booking's GPUs before it is announced as idle;
    /// absent: never. Older agents do not send it.
    #[serde(default)]
    pub idle_after_secs: Option<i64>,
    /// Whether an idle booking is also released. Older agents do not send it: false.
    #[serde(default)]
    pub release_idle: bool,
    /// Seconds a started booking's GPUs may hold memory (a process on them) below
    /// `idle_held_below_pct` utilisation before it is announced as idle but held; absent:
    /// never. Older agents do not send it (they do not look).
    #[serde(default)]
    pub idle_held_after_secs: Option<i64>,
    /// The utilisation, in percent, under which a GPU holding memory counts as idle.
    #[serde(default = "default_idle_held_below")]
    pub idle_held_below_pct: u32,
    /// Whether a booking idle but held is also released. Older agents do not send it: false.
    #[serde(default)]
    pub release_idle_held: bool,
    /// Seconds before a slot's end its owner is warned ("ends in 10 minutes"). Older agents
    /// do not send it: 600.
    #[serde(default = "default_end_warning")]
    pub end_warning_secs: i64,
    /// Longest grace period a job may ask for between its end signal and SIGKILL (seconds).
    /// It holds for everyone, admins included: a job in its grace period still runs on GPUs
    /// that the next booking holds. Older agents do not send it: 300.
    #[serde(default = "default_max_grace")]
    pub max_grace_secs: i64,
    /// Largest a job's log may grow, in bytes; the agent cuts it there. Older agents do not
    /// send it: 1 GiB.
    #[serde(default = "default_max_log")]
    pub max_log_bytes: u64,
    /// Bookings one user may have waiting for approval at once; a request that would wait
    /// beyond it is refused, not queued. Admins' requests never wait, so they are not held
    /// to it. Older agents do not send it: 20.
    #[serde(default = "default_max_pending")]
    pub max_pending: u32,
    /// Bookings one user may hold that have not ended (confirmed, started or waiting), so no
    /// user can fill the agent's store; admins are not held to it. Older agents do not send
    /// it: 500.
    #[serde(default = "default_max_upcoming")]
    pub max_upcoming: u32,
    /// Where staged data is kept on the server, one directory per owner. Older agents do not
    /// send it: /scratch/gpubook.
    #[serde(default = "default_scratch")]
    pub scratch: String,
    /// Bytes of staged data one owner may keep in scratch; the least recently used copies
    /// are removed beyond it. Older agents do not send it: 500 GiB.
    #[serde(default = "default_stage_quota")]
    pub stage_quota_bytes: u64,
}

/// The longest any duration in a policy file may be, in days (`granularity` and `max_grace`
/// are held to a day).
pub const MAX_POLICY_DAYS: i64 = 366;
const MAX_POLICY_SECS: i64 = MAX_POLICY_DAYS * DAY;
const DAY: i64 = 86_400;
/// The smallest `max_log` a policy may set: below it a log says nothing useful.
pub const MIN_LOG_BYTES: u64 = 64 << 10;

fn default_end_warning() -> i64 {
    crate::plan::END_WARNING.num_seconds()
}

fn default_idle_held_after() -> i64 {
    30 * 60
}

fn default_idle_held_below() -> u32 {
    5
}

fn default_max_grace() -> i64 {
    300
}

fn default_max_log() -> u64 {
    1 << 30
}

fn default_max_pending() -> u32 {
    20
}

fn default_max_upcoming() -> u32 {
    500
}

/// Where staged data is kept unless the policy says otherwise.
pub const DEFAULT_SCRATCH: &str = "/scratch/gpubook";

fn default_scratch() -> String {
    DEFAULT_SCRATCH.into()
}

fn default_stage_quota() -> u64 {
    500 << 30
}

impl Default for Policy {
    /// No limits, everyone a user, a 15-minute grid.
    fn default() -> Self {
        Self {
            default_role: Role::User,
            admins: Vec::new(),
            guests: Vec::new(),
            users: Vec::new(),
            granularity_secs: 15 * 60,
            max_booking_secs: None,
            max_ahead_secs: None,
            weekly_quota_gpu_hours: None,
            max_gpus_at_once: None,
            over_policy: OverPolicy::Approval,
            intruders: IntruderPolicy::Warn,
            idle_after_secs: None,
            release_idle: false,
            idle_held_after_secs: Some(default_idle_held_after()),
            idle_held_below_pct: default_idle_held_below(),
            release_idle_held: false,
            end_warning_secs: default_end_warning(),
            max_grace_secs: default_max_grace(),
            max_log_bytes: default_max_log(),
            max_pending: default_max_pending(),
            max_upcoming: default_max_upcoming(),
            scratch: default_scratch(),
            stage_quota_bytes: default_stage_quota(),
        }
    }
}

/// A policy file that could not be read; the message names the field.
#[derive(Debug, Error)]
#[error("policy file: {0}")]
pub struct PolicyError(String);

impl Policy {
    /// Checks every duration and size against its sane range, naming the field (as the file
    /// names it) that is out of it. [`Policy::from_toml`] runs this; the accessors below also
    /// clamp a value a policy built another way carries, so nothing panics on one.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let within = |name: &str, secs: i64, max: i64| {
            if secs <= 0 {
                return Err(PolicyError(format!("{name}: must be more than zero")));
            }
            if secs > max {
                return Err(PolicyError(format!(
                    "{name}: {} is more than the most it may be, {}",
                    Duration::try_seconds(secs)
                        .map(format_duration)
                        .unwrap_or_else(|| format!("{secs}s")),
                    format_duration(Duration::seconds(max))
                )));
            }
            Ok(())
        };
        within("granularity", self.granularity_secs, DAY)?;
        if DAY % self.granularity_secs != 0 {
            return Err(PolicyError(
                "granularity: must divide a day evenly (e.g. 5m, 15m, 30m, 1h)".into(),
            ));
        }
        for (name, v) in [
            ("max_booking", self.max_booking_secs),
            ("max_ahead", self.max_ahead_secs),
            ("idle_after", self.idle_after_secs),
            ("idle_held_after", self.idle_held_after_secs),
            ("end_warning", Some(self.end_warning_secs)),
        ] {
            if let Some(secs) = v {
                within(name, secs, MAX_POLICY_SECS)?;
            }
        }
        within("max_grace", self.max_grace_secs, DAY)?;
        if !(1..=100).contains(&self.idle_held_below_pct) {
            return Err(PolicyError(format!(
                "idle_held_below: {} is not a percentage from 1 to 100",
                self.idle_held_below_pct
            )));
        }
        if !self.scratch.starts_with('/')
            || self.scratch.contains('\0')
            || self.scratch.split('/').any(|p| p == "..")
        {
            return Err(PolicyError(format!(
                "scratch: {:?} is not an absolute path without '..'",
                self.scratch
            )));
        }
        if self.max_log_bytes < MIN_LOG_BYTES {
            return Err(PolicyError(format!(
                "max_log: {} is less than the least it may be, {}",
                format_size(self.max_log_bytes),
                format_size(MIN_LOG_BYTES)
            )));
        }
        Ok(())
    }

    /// The longest grace period a job may ask for between its end signal and SIGKILL. Holds
    /// for everyone, admins included (the grace runs on the next booking's GPUs).
    pub fn max_grace(&self) -> Duration {
        Duration::seconds(self.max_grace_secs.clamp(0, DAY))
    }

    /// The size in bytes at which the agent cuts a job's log.
    pub fn max_log(&self) -> u64 {
        self.max_log_bytes
    }

    /// How many requests one user may have waiting for approval at once (admins are not held
    /// to it: their requests never wait).
    pub fn max_pending(&self) -> u32 {
        self.max_pending
    }

    /// How many bookings that have not ended one user may hold (admins are not held to it).
    pub fn max_upcoming(&self) -> u32 {
        self.max_upcoming
    }

    /// How long before a slot's end its owner is warned.
    pub fn end_warning(&self) -> Duration {
        Duration::seconds(self.end_warning_secs.clamp(0, MAX_POLICY_SECS))
    }

    /// How long a started booking's GPUs may go without a process before it is idle.
    pub fn idle_after(&self) -> Option<Duration> {
        self.idle_after_secs
            .map(|s| Duration::seconds(s.clamp(1, MAX_POLICY_SECS)))
    }

    /// How long a started booking's GPUs may hold memory while nearly idle before it is
    /// announced as idle but held.
    pub fn idle_held_after(&self) -> Option<Duration> {
        self.idle_held_after_secs
            .map(|s| Duration::seconds(s.clamp(1, MAX_POLICY_SECS)))
    }

    /// The grid bookings snap to (between a second and a day, whatever the field says).
    pub fn granularity(&self) -> Duration {
        Duration::seconds(self.granularity_secs.clamp(1, DAY))
    }

    /// The role of `user`, a member of `groups`. Admin wins over user, user over guest, so a
    /// person listed twice gets the stronger role.
    pub fn role_of(&self, user: &str, groups: &[String]) -> Role {
        let named = |list: &[String]| {
            list.iter().any(|entry| match entry.strip_prefix("group:") {
                Some(g) => groups.iter().any(|mine| mine == g),
                None => entry == user,
            })
        };
        if named(&self.admins) {
            Role::Admin
        } else if named(&self.users) {
            Role::User
        } else if named(&self.guests) {
            Role::Guest
        } else {
            self.default_role
        }
    }
}

#[cfg(test)]
mod tests;
