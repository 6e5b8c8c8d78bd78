//! The commands the web view may invoke (each declared in build.rs and allowed in
//! capabilities/default.json), split by domain. Each only calls gpubook-desktop.

pub mod bookings;
pub mod calendar;
pub mod jobs;
pub mod servers;
pub mod settings;

/// What every command returns: its value, or the typed error the UI shows.
pub type Answer<T> = Result<T, gpubook_desktop::AppError>;
