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
//! end_warning = "10m"              # owners are warned this long before a slot ends
//! ```

use crate::duration::parse_duration;
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

/// The lab's policy. Every limit is optional: absent means no limit.
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
    /// Seconds before a slot's end its owner is warned ("ends in 10 minutes"). Older agents
    /// do not send it: 600.
    #[serde(default = "default_end_warning")]
    pub end_warning_secs: i64,
}

fn default_end_warning() -> i64 {
    crate::plan::END_WARNING.num_seconds()
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
            end_warning_secs: default_end_warning(),
        }
    }
}

/// A policy file that could not be read; the message names the field.
#[derive(Debug, Error)]
#[error("policy file: {0}")]
pub struct PolicyError(String);

/// The file as written; durations as text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    default_role: Option<Role>,
    #[serde(default)]
    admins: Vec<String>,
    #[serde(default)]
    guests: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    granularity: Option<String>,
    max_booking: Option<String>,
    max_ahead: Option<String>,
    weekly_quota_gpu_hours: Option<u32>,
    max_gpus_at_once: Option<u32>,
    over_policy: Option<OverPolicy>,
    intruders: Option<IntruderPolicy>,
    idle_after: Option<String>,
    #[serde(default)]
    release_idle: bool,
    end_warning: Option<String>,
}

impl Policy {
    /// Reads a policy from the text of its TOML file.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let f: PolicyFile = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        let dur = |name: &str, v: Option<String>| -> Result<Option<i64>, PolicyError> {
            match v {
                None => Ok(None),
                Some(s) => {
                    let d = parse_duration(&s).map_err(|e| PolicyError(format!("{name}: {e}")))?;
                    if d <= Duration::zero() {
                        return Err(PolicyError(format!("{name}: must be more than zero")));
                    }
                    Ok(Some(d.num_seconds()))
                }
            }
        };
        let d = Policy::default();
        let granularity_secs = dur("granularity", f.granularity)?.unwrap_or(d.granularity_secs);
        if 86_400 % granularity_secs != 0 {
            return Err(PolicyError(
                "granularity: must divide a day evenly (e.g. 5m, 15m, 30m, 1h)".into(),
            ));
        }
        Ok(Self {
            default_role: f.default_role.unwrap_or(d.default_role),
            admins: f.admins,
            guests: f.guests,
            users: f.users,
            granularity_secs,
            max_booking_secs: dur("max_booking", f.max_booking)?,
            max_ahead_secs: dur("max_ahead", f.max_ahead)?,
            weekly_quota_gpu_hours: f.weekly_quota_gpu_hours,
            max_gpus_at_once: f.max_gpus_at_once,
            over_policy: f.over_policy.unwrap_or(d.over_policy),
            intruders: f.intruders.unwrap_or(d.intruders),
            idle_after_secs: dur("idle_after", f.idle_after)?,
            release_idle: f.release_idle,
            end_warning_secs: dur("end_warning", f.end_warning)?.unwrap_or(d.end_warning_secs),
        })
    }

    /// How long before a slot's end its owner is warned.
    pub fn end_warning(&self) -> Duration {
        Duration::seconds(self.end_warning_secs)
    }

    /// How long a started booking's GPUs may go without a process before it is idle.
    pub fn idle_after(&self) -> Option<Duration> {
        self.idle_after_secs.map(Duration::seconds)
    }

    /// The grid bookings snap to.
    pub fn granularity(&self) -> Duration {
        Duration::seconds(self.granularity_secs)
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
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_file() {
        let p = Policy::from_toml(
            r#"
default_role = "user"
admins = ["alice", "group:gpu-admins"]
guests = ["group:students"]
granularity = "15m"
max_booking = "24h"
max_ahead = "14d"
weekly_quota_gpu_hours = 200
max_gpus_at_once = 4
over_policy = "approval"
intruders = "warn"
idle_after = "30m"
release_idle = false
"#,
        )
        .unwrap();
        assert_eq!(p.max_booking_secs, Some(86_400));
        assert_eq!(p.intruders, IntruderPolicy::Warn);
        assert_eq!(p.idle_after(), Some(Duration::minutes(30)));
        assert!(!p.release_idle);
        assert_eq!(p.role_of("alice", &[]), Role::Admin);
        assert_eq!(p.role_of("bob", &["gpu-admins".into()]), Role::Admin);
        assert_eq!(p.role_of("carol", &["students".into()]), Role::Guest);
        assert_eq!(p.role_of("dave", &[]), Role::User);
    }

    #[test]
    fn bad_files_name_the_field() {
        let e = Policy::from_toml("max_booking = \"forever\"").unwrap_err();
        assert!(e.to_string().contains("max_booking"), "{e}");
        let e = Policy::from_toml("max_bookings = \"1h\"").unwrap_err();
        assert!(e.to_string().contains("max_bookings"), "{e}");
        let e = Policy::from_toml("granularity = \"7m\"").unwrap_err();
        assert!(e.to_string().contains("granularity"), "{e}");
        let e = Policy::from_toml("default_role = \"king\"").unwrap_err();
        assert!(e.to_string().contains("king"), "{e}");
        let e = Policy::from_toml("intruders = \"shoot\"").unwrap_err();
        assert!(e.to_string().contains("shoot"), "{e}");
        let e = Policy::from_toml("idle_after = \"0s\"").unwrap_err();
        assert!(e.to_string().contains("idle_after"), "{e}");
        let e = Policy::from_toml("release_idle = \"yes\"").unwrap_err();
        assert!(e.to_string().contains("release_idle"), "{e}");
    }

    #[test]
    fn watching_the_gpus_is_off_unless_asked() {
        let p = Policy::from_toml("").unwrap();
        assert_eq!(p.intruders, IntruderPolicy::Warn);
        assert_eq!(p.idle_after(), None);
        assert!(!p.release_idle);
        let p = Policy::from_toml("intruders = \"stop\"\nidle_after = \"2s\"\nrelease_idle = true")
            .unwrap();
        assert_eq!(p.intruders, IntruderPolicy::Stop);
        assert_eq!(p.idle_after_secs, Some(2));
        assert!(p.release_idle);
    }

    #[test]
    fn a_policy_from_an_older_agent_reads_with_the_defaults() {
        // What an agent before the watch fields sent in a PolicyResponse.
        let mut v = serde_json::to_value(Policy::default()).unwrap();
        for field in ["intruders", "idle_after_secs", "release_idle"] {
            v.as_object_mut().unwrap().remove(field);
        }
        let p: Policy = serde_json::from_value(v).unwrap();
        assert_eq!(p, Policy::default());
    }
}
