//! Protocol 1.3: a report of GPU-hours per user and per GPU over a window (see
//! `gpubook_core::report` for what each figure means).

use chrono::{DateTime, Utc};
use gpubook_core::report::Report;
use serde::{Deserialize, Serialize};

/// Asks for a report over `[from, to)`: at most `gpubook_core::report::MAX_REPORT_DAYS` days.
/// A user who is not an admin gets their own line, and the GPUs as far as their bookings go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ReportRequest {
    /// Start, UTC.
    pub from: DateTime<Utc>,
    /// End, UTC; after `from`.
    pub to: DateTime<Utc>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ReportResponse {
    /// The server's name.
    pub server: String,
    /// Whether it covers everyone (the caller is an admin) or the caller alone.
    pub everyone: bool,
    /// The figures.
    pub report: Report,
}
