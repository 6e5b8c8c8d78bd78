//! gpubook's domain: GPUs, bookings, half-open UTC intervals, the lab's policy and roles, and
//! the plan that decides every change to the bookings.
//!
//! Nothing here does I/O or is async: the agent feeds the plan the current time, who is
//! asking and the policy, and persists what the plan decides. That keeps every rule testable
//! with plain values (see the property tests in `tests/`).

pub mod booking;
pub mod duration;
pub mod error;
pub mod gpu;
pub mod maintenance;
pub mod plan;
pub mod policy;
pub mod predict;
pub mod report;
pub mod series;
pub mod size;
pub mod time;
pub mod timeline;
pub mod transfer;

pub use booking::{
    AsapRequest, Booking, BookingId, BookingState, JobRun, JobSpec, JobState, MaintenanceOutcome,
    Note, SavedFile, Usage, MAX_BOOKING_BYTES,
};
pub use error::{Conflict, PlanError};
pub use gpu::{Gpu, GpuUuid};
pub use maintenance::{Maintenance, MaintenanceCause, MaintenanceId, NewMaintenance};
pub use plan::{Change, ChangeKind, GpuSelection, Op, Outside, Plan, When, AGENT_USER};
pub use policy::{Actor, Policy, PolicyError, Role, Rule};
pub use time::Interval;
pub use transfer::S3Access;
