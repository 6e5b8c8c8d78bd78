//! Live GPU readings: pushed to subscribers, never stored as events.

use chrono::{DateTime, Utc};
use gpubook_core::GpuUuid;
use serde::{Deserialize, Serialize};

/// A compute process on a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct GpuProcess {
    /// Its pid on the server.
    pub pid: u32,
    /// Its owner's user name, where it could be found.
    #[serde(default)]
    pub user: Option<String>,
    /// GPU memory it holds, in bytes.
    pub used_bytes: u64,
}

/// One reading of one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct GpuReading {
    /// Which GPU.
    pub uuid: GpuUuid,
    /// Its index now.
    pub index: u32,
    /// Model name.
    pub name: String,
    /// Memory in use, bytes.
    pub memory_used: u64,
    /// Memory in all, bytes.
    pub memory_total: u64,
    /// Utilisation of the GPU's cores, percent.
    pub util_gpu: u32,
    /// Utilisation of its memory bandwidth, percent.
    pub util_mem: u32,
    /// Degrees Celsius.
    pub temperature_c: u32,
    /// Power draw, milliwatts.
    pub power_mw: u32,
    /// Power limit, milliwatts.
    pub power_limit_mw: u32,
    /// Compute processes on it.
    pub processes: Vec<GpuProcess>,
    /// Why the GPU is not usable ("lost", "reset required"), when the reader says it is not;
    /// the agent then takes it out of service until an admin puts it back. Added in 1.4;
    /// older agents send none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub fault: Option<String>,
    /// On Slurm, whether Slurm has given this GPU to a job now (`sinfo`'s `gres_used`); what
    /// the GPU page shows where no live reading of the node comes. Newer than 1.4; other
    /// readers send none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub allocated: Option<bool>,
}

/// A reading of every GPU of a server at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Readings {
    /// When it was read.
    pub at: DateTime<Utc>,
    /// One per GPU.
    pub gpus: Vec<GpuReading>,
}
