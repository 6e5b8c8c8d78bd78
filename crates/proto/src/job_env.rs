//! Protocol 1.3: the environment a booking's job has (`CUDA_VISIBLE_DEVICES`,
//! `CUDA_DEVICE_ORDER`, `GPUBOOK_*`), for its owner's own shell while the slot is on
//! (`gpubook env N`, `gpubook shell N`).
//!
//! Only the booking's owner is answered (an admin too is refused: the variables are for
//! working in the slot, which is the owner's), and only while the booking is active; otherwise
//! the error's kind says why: `not_allowed` (another person's booking), `not_started` (its
//! slot has not started yet), `ended` (its slot is over, or it was cancelled or denied),
//! `not_found` (no such booking).

use gpubook_core::BookingId;
use serde::{Deserialize, Serialize};

/// Asks for the environment of booking `id`'s job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct JobEnvRequest {
    /// Which booking.
    pub id: BookingId,
}

/// The variables a job of the booking has, as name and value, in a stable order. The job's
/// own key (`GPUBOOK_JOB_KEY`) is not among them: a shell is not the job, and is not stopped
/// or adopted as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct JobEnvResponse {
    /// Which booking.
    pub id: BookingId,
    /// The server's name.
    pub server: String,
    /// `(name, value)` pairs.
    pub vars: Vec<(String, String)>,
}
