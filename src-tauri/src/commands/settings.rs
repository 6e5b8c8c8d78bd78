//! Settings: which notifications, what the exported calendar shows.

use gpubook_desktop::Settings;
use tauri::AppHandle;

use super::{manager, Answer};

/// The settings.
pub async fn settings(app: &AppHandle) -> Answer<Settings> {
    Ok(manager(app).settings())
}

/// Saves the settings.
pub async fn set_settings(app: &AppHandle, settings: Settings) -> Answer<()> {
    manager(app).set_settings(settings)
}
