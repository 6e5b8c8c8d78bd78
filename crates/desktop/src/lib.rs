//! The gpubook desktop app's logic, without Tauri: the servers it shows and their
//! connections, the event pump, native notifications, settings and what it remembers.
//! The Tauri shell (src-tauri) only wires these to the web view.

pub mod caldav;
pub mod caldav_discover;
pub mod calendar;
pub mod error;
pub mod ipc;
pub mod local;
pub mod manager;
pub mod memory;
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
