//! The app's contract with its web view (docs/app-contract.md): the commands the web view may
//! invoke and the events the app pushes, each declared once in `declare.rs`. This module turns
//! that declaration into what Rust code needs: the command names, one typed marker per event
//! ([`AppEvent`]), and (feature `ts`) the generated `ui/src/lib/api.ts` and the contract's
//! table for docs/app-contract.md.

mod declare;
#[cfg(feature = "ts")]
mod typescript;

#[cfg(feature = "ts")]
pub use typescript::{api_ts, doc_table};

/// Every type the declaration names, so that a module expanding it needs one `use`.
pub mod types {
    pub use crate::caldav_discover::{CaldavCalendar, CaldavCalendars};
    pub use crate::{
        AsapAnyResponse, CaldavStatus, EventPayload, LogPayload, ReadingsPayload, ServerView,
        Settings,
    };
    pub use chrono::{DateTime, Utc};
    pub use gpubook_core::{Booking, Maintenance, S3Access};
    pub use gpubook_proto::{
        BookRequest, BookingResponse, GpusResponse, LogsResponse, MaintenanceResponse,
        NotifyResponse, NotifyTarget, PolicyResponse, ReportResponse, SuggestionResponse,
        UsageSeriesResponse,
    };
    pub use std::collections::BTreeMap;
}

/// An event the app pushes to the web view: its name there and the type of its payload.
pub trait AppEvent {
    /// Its name on the web view ("gpubook://server").
    const NAME: &'static str;
    /// What it carries.
    type Payload: serde::Serialize;
}

macro_rules! command_names {
    ($( $(#[doc = $doc:literal])* $domain:ident :: $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty ; )*) => {
        /// The name of every command, in the declaration's order.
        pub const COMMANDS: &[&str] = &[$(stringify!($name)),*];
    };
}
crate::with_app_commands!(command_names);

macro_rules! event_markers {
    ($( $(#[doc = $doc:literal])* $marker:ident = $wire:literal => $payload:ty ; )*) => {
        /// One marker type per event: `emit::<events::Server>(&view)` cannot send another payload.
        pub mod events {
            use super::types::*;
            $(
                $(#[doc = $doc])*
                #[derive(Debug, Clone, Copy)]
                pub struct $marker;
                impl super::AppEvent for $marker {
                    const NAME: &'static str = $wire;
                    type Payload = $payload;
                }
            )*
        }
        /// The name of every event, in the declaration's order.
        pub const EVENTS: &[&str] = &[$($wire),*];
    };
}
crate::with_app_events!(event_markers);
