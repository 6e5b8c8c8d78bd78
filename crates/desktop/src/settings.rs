//! The person's settings: which notifications they want, what the calendar shows.
//! Kept as JSON in `$XDG_CONFIG_HOME/gpubook/app-settings.json`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every kind of notification the app raises, as named in the settings.
pub const NOTIFY_KINDS: &[&str] = &[
    "slot_starting",
    "slot_started",
    "slot_ending",
    "job_finished",
    "job_stopped",
    "job_failed",
    "booking_approved",
    "booking_denied",
    "booking_moved_earlier",
    "maintenance",
    "intruder",
    "idle_held",
    "stage_failed",
    "job_saved",
    "save_failed",
    "server_unreachable",
    "server_back",
];

/// The settings page's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
#[serde(default)]
pub struct Settings {
    /// Per notification kind (see [`NOTIFY_KINDS`]): shown or not. A missing kind is shown.
    pub notify: BTreeMap<String, bool>,
    /// Whether the person's own job command appears in exported and subscribed calendars.
    pub show_own_command_in_calendar: bool,
    /// The CalDAV account (never its password). Changed only by signing in and out
    /// (`Manager::caldav_login`, `caldav_logout`); `set_settings` keeps it as it is.
    #[cfg_attr(feature = "ts", ts(skip))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caldav: Option<crate::caldav::CaldavAccount>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            notify: NOTIFY_KINDS.iter().map(|k| (k.to_string(), true)).collect(),
            show_own_command_in_calendar: false,
            caldav: None,
        }
    }
}

impl Settings {
    /// Whether notifications of `kind` are wanted.
    pub fn wants(&self, kind: &str) -> bool {
        self.notify.get(kind).copied().unwrap_or(true)
    }

    /// The settings file.
    pub fn path() -> PathBuf {
        crate::paths::config_dir().join("app-settings.json")
    }

    /// Reads the settings from `path`; the defaults where there is no file yet. Every known
    /// kind is present in the result.
    pub fn load(path: &Path) -> Result<Self, String> {
        let mut s = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Settings>(&bytes).map_err(|e| {
                format!(
                    "The settings file {} cannot be read ({e}); fix or delete it.",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
            Err(e) => return Err(format!("Cannot read {}: {e}", path.display())),
        };
        for k in NOTIFY_KINDS {
            s.notify.entry(k.to_string()).or_insert(true);
        }
        Ok(s)
    }

    /// Writes the settings to `path`.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(self).expect("settings serialize");
        crate::paths::write_atomic(path, &bytes)
            .map_err(|e| format!("Cannot save the settings to {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_default_to_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        let s = Settings::load(&p).unwrap();
        assert!(s.wants("slot_starting"));
        let mut s2 = s.clone();
        s2.notify.insert("job_finished".into(), false);
        s2.save(&p).unwrap();
        let back = Settings::load(&p).unwrap();
        assert!(!back.wants("job_finished"));
        assert!(back.wants("intruder"));
        std::fs::write(&p, b"{not json").unwrap();
        assert!(Settings::load(&p).unwrap_err().contains("cannot be read"));
    }
}
