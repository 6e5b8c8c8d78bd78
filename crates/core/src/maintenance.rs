//! Maintenance: a period in which GPUs (some, or the whole server) are out of service. Its own
//! kind of block on the calendar, not a booking: nobody books into it, bookings already there
//! are moved or cancelled when it is made (see `Plan::add_maintenance`), and a running slot
//! ends at its start.

use crate::gpu::GpuUuid;
use crate::time::Interval;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How long a GPU that the agent took out of service for a fault stays out: until an admin
/// puts it back, which in practice means "for good" (a little under the plan's horizon).
pub const FAULT_HOLD: Duration = Duration::days(3650);
/// Where the policy sets no `max_ahead`, how far after now a booking displaced by maintenance
/// may be moved; beyond it, it is cancelled.
pub const RELOCATE_HORIZON: Duration = Duration::days(14);
/// Most maintenance periods that have not ended, per server: what an admin (or a GPU that
/// fails again and again) can fill.
pub const MAX_OPEN_MAINTENANCE: usize = 1000;

/// A maintenance period's number, unique on its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(transparent)]
pub struct MaintenanceId(pub u64);

impl fmt::Display for MaintenanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// Why a maintenance period exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceCause {
    /// An admin planned it.
    Admin,
    /// The agent saw the GPU lost or in error and took it out of service until an admin puts
    /// it back.
    Fault,
}

/// GPUs out of service over an interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Maintenance {
    /// Its number.
    pub id: MaintenanceId,
    /// The GPUs out of service, in index order (every GPU when `whole_server`).
    pub gpus: Vec<GpuUuid>,
    /// Whether it takes the whole server (`--all`), so the calendar can say so.
    pub whole_server: bool,
    /// When. For a fault, from when it was seen until an admin ends it ([`FAULT_HOLD`]).
    pub interval: Interval,
    /// Why, for the people whose bookings it moves ("driver 570").
    pub reason: String,
    /// Who made it: an admin's user name, or "gpubook-agent" for a fault.
    pub by: String,
    /// Planned by an admin, or a fault the agent saw.
    pub cause: MaintenanceCause,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl Maintenance {
    /// Whether it takes `gpu` out of service at some instant of `interval`.
    pub fn blocks(&self, gpu: &GpuUuid, interval: &Interval) -> bool {
        self.interval.overlaps(interval) && self.gpus.contains(gpu)
    }

    /// A fault held until an admin puts the GPU back.
    pub fn open_ended(&self) -> bool {
        self.cause == MaintenanceCause::Fault
    }
}

/// What an admin (or the agent, for a fault) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMaintenance {
    /// These GPUs; `None`: the whole server.
    pub gpus: Option<Vec<GpuUuid>>,
    /// When (a start in the past starts now).
    pub interval: Interval,
    /// Why.
    pub reason: String,
    /// Planned, or a fault.
    pub cause: MaintenanceCause,
}
