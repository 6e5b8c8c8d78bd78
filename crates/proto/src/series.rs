//! Protocol 1.4 (added later in 1.4): a booking's GPU utilisation and memory over its slot, as
//! the agent kept them (see `gpubook_core::series` for the shape and the bounds), for its
//! panel and `gpubook usage N --series`.
//!
//! Only the booking's owner and admins are answered; anyone else gets the error kind
//! `not_allowed` (a series says how someone works), and an unknown booking `not_found`. A
//! booking whose slot has not started has no points yet. An agent from before this request
//! refuses its type as unknown.

use chrono::{DateTime, Utc};
use gpubook_core::series::SeriesPoint;
use gpubook_core::{BookingId, GpuUuid};
use serde::{Deserialize, Serialize};

/// Asks for booking `id`'s series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct UsageSeriesRequest {
    /// Which booking.
    pub id: BookingId,
}

/// A booking's series, one per booked GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct UsageSeriesResponse {
    /// Which booking.
    pub id: BookingId,
    /// The server's name.
    pub server: String,
    /// The slot's start, UTC: where the series begins.
    pub start: DateTime<Utc>,
    /// The slot's end, UTC, as it stands now.
    pub end: DateTime<Utc>,
    /// How many seconds each point covers (0 when nothing was read yet).
    pub bucket_secs: i64,
    /// Per GPU of the booking, in the booking's order.
    pub gpus: Vec<GpuSeries>,
}

/// One GPU's points, oldest first; a bucket without readings (the agent was down, the GPU
/// fell off the bus) has no point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct GpuSeries {
    /// Which GPU.
    pub uuid: GpuUuid,
    /// Its index now (what people see); absent where the GPU is no longer in the server.
    #[serde(default)]
    pub index: Option<u32>,
    /// Its total memory, bytes, to scale the memory drawn (0 when unknown).
    #[serde(default)]
    pub memory_total: u64,
    /// The points.
    pub points: Vec<SeriesPoint>,
}
