//! The policy's TOML file as the admin writes it, read into a [`Policy`].

use super::{IntruderPolicy, OverPolicy, Policy, PolicyError, Role};
use crate::duration::parse_duration;
use crate::size::parse_size;
use serde::Deserialize;

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
    idle_held_after: Option<String>,
    idle_held_below: Option<u32>,
    #[serde(default)]
    release_idle_held: bool,
    end_warning: Option<String>,
    max_grace: Option<String>,
    max_log: Option<SizeText>,
    max_pending: Option<u32>,
    max_upcoming: Option<u32>,
    scratch: Option<String>,
    stage_quota: Option<SizeText>,
    /// The `[mail]` table, read by [`super::mail::MailSettings::from_policy_toml`].
    #[allow(dead_code)]
    mail: Option<serde::de::IgnoredAny>,
}

/// `max_log` and `stage_quota` as written: "1G", or a plain number of bytes (with or without quotes).
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeText {
    Bytes(u64),
    Text(String),
}

impl Policy {
    /// Reads a policy from the text of its TOML file, and checks it ([`Policy::validate`]).
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let f: PolicyFile = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        let dur = |name: &str, v: Option<String>| -> Result<Option<i64>, PolicyError> {
            match v {
                None => Ok(None),
                Some(s) => {
                    let d = parse_duration(&s).map_err(|e| PolicyError(format!("{name}: {e}")))?;
                    Ok(Some(d.num_seconds()))
                }
            }
        };
        let d = Policy::default();
        let size = |name: &str, v: Option<SizeText>, default: u64| match v {
            None => Ok(default),
            Some(SizeText::Bytes(n)) => Ok(n),
            Some(SizeText::Text(s)) => {
                parse_size(&s).map_err(|e| PolicyError(format!("{name}: {e}")))
            }
        };
        let max_log_bytes = size("max_log", f.max_log, d.max_log_bytes)?;
        let stage_quota_bytes = size("stage_quota", f.stage_quota, d.stage_quota_bytes)?;
        let policy = Self {
            default_role: f.default_role.unwrap_or(d.default_role),
            admins: f.admins,
            guests: f.guests,
            users: f.users,
            granularity_secs: dur("granularity", f.granularity)?.unwrap_or(d.granularity_secs),
            max_booking_secs: dur("max_booking", f.max_booking)?,
            max_ahead_secs: dur("max_ahead", f.max_ahead)?,
            weekly_quota_gpu_hours: f.weekly_quota_gpu_hours,
            max_gpus_at_once: f.max_gpus_at_once,
            over_policy: f.over_policy.unwrap_or(d.over_policy),
            intruders: f.intruders.unwrap_or(d.intruders),
            idle_after_secs: dur("idle_after", f.idle_after)?,
            release_idle: f.release_idle,
            idle_held_after_secs: match f.idle_held_after.as_deref() {
                Some("off") => None,
                None => d.idle_held_after_secs,
                Some(_) => dur("idle_held_after", f.idle_held_after)?,
            },
            idle_held_below_pct: f.idle_held_below.unwrap_or(d.idle_held_below_pct),
            release_idle_held: f.release_idle_held,
            end_warning_secs: dur("end_warning", f.end_warning)?.unwrap_or(d.end_warning_secs),
            max_grace_secs: dur("max_grace", f.max_grace)?.unwrap_or(d.max_grace_secs),
            max_log_bytes,
            max_pending: f.max_pending.unwrap_or(d.max_pending),
            max_upcoming: f.max_upcoming.unwrap_or(d.max_upcoming),
            scratch: f.scratch.unwrap_or(d.scratch),
            stage_quota_bytes,
        };
        policy.validate()?;
        Ok(policy)
    }
}
