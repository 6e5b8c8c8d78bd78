//! The gpubook desktop app's logic, without Tauri: the servers it shows and their
//! connections (one live session each), the event relay, native notifications, settings and what it remembers.
//! The Tauri shell (src-tauri) only wires these to the web view.

pub mod caldav;
pub mod caldav_discover;
pub mod calendar;
pub mod contract;
pub mod error;
pub mod ipc;
pub mod last_seen;
pub mod local;
pub mod manager;
pub mod notify;
pub mod paths;
pub mod prompt;
pub mod servers;
pub mod settings;
pub mod tray;

pub use caldav::{CaldavAccount, CaldavState, CaldavStatus};
pub use error::AppError;
pub use ipc::{
    AsapAnyResponse, EventPayload, LogPayload, ReadingsPayload, ServerState, ServerView,
};
pub use manager::{Address, Files, Manager, Sink};
pub use settings::Settings;
