//! Events: what happened to a booking, numbered and durable, pushed to subscribers.

use chrono::{DateTime, Utc};
use gpubook_core::{Booking, Interval};
use serde::{Deserialize, Serialize};

/// What an event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A booking was made (confirmed or waiting for approval).
    BookingCreated,
    /// It was moved, resized or extended.
    BookingChanged,
    /// It was cancelled.
    BookingCancelled,
    /// An admin approved it.
    BookingApproved,
    /// An admin denied it (or it expired waiting).
    BookingDenied,
    /// A queued request moved earlier.
    BookingMovedEarlier,
    /// Its owner released the rest of its slot.
    BookingReleased,
    /// Its slot starts in 5 minutes.
    SlotStarting,
    /// Its slot started.
    SlotStarted,
    /// Its slot ends in 10 minutes.
    SlotEnding,
    /// Its slot ended.
    SlotEnded,
    /// Its job started.
    JobStarted,
    /// Its job ended by itself (exit code or signal, duration in the booking's `run`).
    JobFinished,
    /// Its job was stopped at the slot's end.
    JobStopped,
    /// Its job could not be started.
    JobFailed,
    /// Its job vanished while the agent was down.
    JobLost,
    /// Someone else's process is on its GPUs.
    Intruder,
    /// Its GPUs have been idle for a while.
    Idle,
    /// Its GPUs hold memory while nearly idle, for a while.
    IdleHeld,
    /// Its GPU usage summary was recorded.
    UsageRecorded,
    /// How far the copy of its staged data has come (in the note).
    StageProgress,
    /// Its staged data is in place for its slot (in the note).
    StageReady,
    /// Its data could not be staged (why in the note).
    StageFailed,
    /// Its job's results were saved (files and where in the note).
    JobSaved,
    /// Its job's results could not be saved after every retry (why in the note).
    SaveFailed,
    /// A kind this client does not know (from a newer agent).
    #[serde(other)]
    Unknown,
}

impl EventKind {
    /// Every kind an agent sends (all but [`EventKind::Unknown`]), in declaration order: the
    /// choices a person has where kinds are named (`gpubook notify set --kinds`).
    pub const KNOWN: &'static [EventKind] = &[
        EventKind::BookingCreated,
        EventKind::BookingChanged,
        EventKind::BookingCancelled,
        EventKind::BookingApproved,
        EventKind::BookingDenied,
        EventKind::BookingMovedEarlier,
        EventKind::BookingReleased,
        EventKind::SlotStarting,
        EventKind::SlotStarted,
        EventKind::SlotEnding,
        EventKind::SlotEnded,
        EventKind::JobStarted,
        EventKind::JobFinished,
        EventKind::JobStopped,
        EventKind::JobFailed,
        EventKind::JobLost,
        EventKind::Intruder,
        EventKind::Idle,
        EventKind::IdleHeld,
        EventKind::UsageRecorded,
        EventKind::StageProgress,
        EventKind::StageReady,
        EventKind::StageFailed,
        EventKind::JobSaved,
        EventKind::SaveFailed,
    ];
}

#[cfg(test)]
mod known_tests {
    use super::EventKind;

    /// Adding a kind breaks this match until it is listed in [`EventKind::KNOWN`] too.
    #[test]
    fn every_kind_but_unknown_is_known() {
        for k in EventKind::KNOWN {
            match k {
                EventKind::BookingCreated => {}
                EventKind::BookingChanged => {}
                EventKind::BookingCancelled => {}
                EventKind::BookingApproved => {}
                EventKind::BookingDenied => {}
                EventKind::BookingMovedEarlier => {}
                EventKind::BookingReleased => {}
                EventKind::SlotStarting => {}
                EventKind::SlotStarted => {}
                EventKind::SlotEnding => {}
                EventKind::SlotEnded => {}
                EventKind::JobStarted => {}
                EventKind::JobFinished => {}
                EventKind::JobStopped => {}
                EventKind::JobFailed => {}
                EventKind::JobLost => {}
                EventKind::Intruder => {}
                EventKind::Idle => {}
                EventKind::IdleHeld => {}
                EventKind::UsageRecorded => {}
                EventKind::StageProgress => {}
                EventKind::StageReady => {}
                EventKind::StageFailed => {}
                EventKind::JobSaved => {}
                EventKind::SaveFailed => {}
                EventKind::Unknown => panic!("Unknown is not a kind an agent sends"),
            }
        }
        assert_eq!(EventKind::KNOWN.len(), 25);
    }
}

/// A durable, numbered event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Event {
    /// Its number: strictly increasing, never reused.
    pub seq: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
    /// The booking afterwards (another person's job hidden).
    pub booking: Booking,
    /// The interval before, for moves.
    #[serde(default)]
    pub before: Option<Interval>,
    /// Who did it, when a person did.
    #[serde(default)]
    pub actor: Option<String>,
    /// What the agent saw (an intruder, idleness), for events about more than the booking.
    #[serde(default)]
    pub note: Option<gpubook_core::Note>,
}
