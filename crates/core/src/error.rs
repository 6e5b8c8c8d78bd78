//! What the plan answers when it refuses a change. Each variant maps to one error kind on the
//! wire, so programs can match on it.

use crate::booking::BookingId;
use crate::gpu::GpuUuid;
use crate::policy::Rule;
use crate::time::Interval;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A booking that stands in the way of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Conflict {
    /// The booking in the way.
    pub booking: BookingId,
    /// Who holds it.
    pub owner: String,
    /// The GPUs both want.
    pub gpus: Vec<GpuUuid>,
    /// When it holds them.
    pub interval: Interval,
    /// Its title.
    pub title: String,
}

/// Why the plan refused a change. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// Another booking holds some of the GPUs at that time.
    #[error("{}", conflict_message(.0))]
    Conflict(Vec<Conflict>),
    /// The person may not do this (a guest booking, a user changing another's booking).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// No such booking or GPU.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request makes no sense (end before start, a start in the past, zero GPUs, ...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Some of the GPUs are out of service for maintenance then (protocol 1.4).
    #[error("maintenance: {0}")]
    Maintenance(String),
    /// Something outside gpubook holds the GPUs then (on a Slurm cluster, Slurm's jobs and
    /// reservations); no booking is in the way. Sent as a `conflict` with no bookings.
    #[error("busy: {0}")]
    Busy(String),
    /// Beyond the lab's policy, and the policy does not let an admin approve it.
    #[error("over the lab's policy ({rule}): {message}")]
    OverPolicy {
        /// The rule it broke.
        rule: Rule,
        /// In words, with the limit.
        message: String,
    },
    /// An admin's approval or denial named a revision the booking no longer has: it changed
    /// since the admin looked. Nothing was decided.
    #[error("booking {id} changed since you looked: {shape}")]
    Changed {
        /// Which booking.
        id: BookingId,
        /// Its revision now.
        revision: u32,
        /// What it asks for now, in words (GPUs, times, state).
        shape: String,
    },
}

fn conflict_message(c: &[Conflict]) -> String {
    let parts: Vec<String> = c
        .iter()
        .map(|c| {
            format!(
                "booking {} by {} ({}) holds {} from {} to {}",
                c.booking,
                c.owner,
                c.title,
                c.gpus
                    .iter()
                    .map(|g| g.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                c.interval.start.format("%Y-%m-%d %H:%M UTC"),
                c.interval.end.format("%Y-%m-%d %H:%M UTC"),
            )
        })
        .collect();
    format!("conflict: {}", parts.join("; "))
}
