//! Protocol 1.4: maintenance. An admin takes GPUs or the whole server out of service for a
//! period, lists the periods, and ends one (early, or before it starts). The bookings in the
//! way are moved or cancelled (or, running, cut short) in the same decision; each gets a
//! booking event with a `maintenance` note, so its owner is told the reason and the new time.
//! A user who asks to create or end one is refused with `not_allowed`; anyone may list.

use chrono::{DateTime, Utc};
use gpubook_core::{Booking, Maintenance, MaintenanceId};
use serde::{Deserialize, Serialize};

/// What is asked about maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum MaintenanceRequest {
    /// Take GPUs out of service (admins).
    Create {
        /// GPUs by UUID or index ("2", "3"); absent: the whole server.
        #[serde(default)]
        gpus: Option<Vec<String>>,
        /// Start, UTC (a start in the past starts now).
        start: DateTime<Utc>,
        /// End, UTC.
        end: DateTime<Utc>,
        /// Why, for the people whose bookings it moves.
        reason: String,
    },
    /// The periods that have not ended (and, with `include_past`, the ones that have).
    List {
        /// Also the ended ones.
        #[serde(default)]
        include_past: bool,
    },
    /// End one now, or withdraw it if it has not started (admins). This is also how a GPU
    /// the agent took out of service for a fault is put back.
    End {
        /// Which.
        id: MaintenanceId,
    },
}

/// The answer to every [`MaintenanceRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct MaintenanceResponse {
    /// The server's name.
    pub server: String,
    /// For `create` and `end`: the period afterwards (absent when withdrawn); for `list`: the
    /// periods, by start.
    pub maintenance: Vec<Maintenance>,
    /// The bookings the change moved, cancelled or cut short (other people's jobs hidden).
    #[serde(default)]
    pub changed: Vec<Booking>,
    /// The number of the last event the change wrote (0 for `list`, or when it moved
    /// nothing).
    #[serde(default)]
    pub event: u64,
}
