//! Settings: which notifications, what the exported calendar shows.

use gpubook_desktop::{Manager, Settings};
use tauri::State;

use super::Answer;

/// The settings.
#[tauri::command]
pub fn settings(m: State<'_, Manager>) -> Settings {
    m.settings()
}

/// Saves the settings.
#[tauri::command]
pub fn set_settings(m: State<'_, Manager>, settings: Settings) -> Answer<()> {
    m.set_settings(settings)
}
