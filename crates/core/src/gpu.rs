//! GPUs, named by UUID: indices change across reboots, UUIDs do not.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A GPU's UUID as NVML reports it ("GPU-5a8504ec-…"), or "SIM-…" for a simulated GPU.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(transparent)]
pub struct GpuUuid(pub String);

impl fmt::Display for GpuUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for GpuUuid {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// One GPU of one server, as the plan and the calendar know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Gpu {
    /// Stable identity; what bookings name.
    pub uuid: GpuUuid,
    /// The index NVML gives it now; what people type and see.
    pub index: u32,
    /// Model name, e.g. "NVIDIA H200", or "Simulated GPU 0".
    pub name: String,
    /// Total memory in bytes, for "--min-mem" requests.
    pub memory_total: u64,
    /// Name of the server the GPU is in.
    pub server: String,
    /// True for the simulated set offered where there is no NVIDIA GPU; shown as such.
    #[serde(default)]
    pub simulated: bool,
    /// The node of a cluster it is in (Slurm); none on a plain server, which is one node. A
    /// booking by count takes all its GPUs from one node.
    #[serde(default)]
    pub node: Option<String>,
}
