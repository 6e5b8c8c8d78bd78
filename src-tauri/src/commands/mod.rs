//! The bodies of the commands the web view may invoke, split by domain. Each is declared once
//! in crates/desktop/src/contract/declare.rs (docs/app-contract.md), which src/handlers.rs
//! expands into the Tauri commands that call these. Each only calls gpubook-desktop.

pub mod away;
pub mod bookings;
pub mod calendar;
pub mod jobs;
pub mod servers;
pub mod settings;
pub mod usage;

use gpubook_desktop::Manager;
use tauri::{AppHandle, Manager as _, State};

/// What every command returns: its value, or the typed error the UI shows.
pub type Answer<T> = Result<T, gpubook_desktop::AppError>;

/// The app's manager (managed from the setup on, before the web view can invoke anything).
fn manager(app: &AppHandle) -> State<'_, Manager> {
    app.state::<Manager>()
}
