//! The tray icon: the next booking with a countdown (refreshed every minute), Show, Quit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use gpubook_desktop::tray::next_booking_line;
use gpubook_desktop::Manager;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, TrayIconBuilder, TrayIconEvent};
use tauri::Manager as _;

/// Builds the tray icon and keeps its line current: on the minute, and whenever `changed`
/// says a booking changed.
pub fn build(app: &tauri::App, changed: Arc<Notify>) -> tauri::Result<()> {
    let manager = app.state::<Manager>().inner().clone();
    let line = next_booking_line(&manager.my_bookings(), chrono::Utc::now());
    let next = MenuItem::with_id(app, "next", &line, false, None::<&str>)?;
    let show = MenuItem::with_id(app, "show", "Show gpubook", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(
        app,
        &[&next, &PredefinedMenuItem::separator(app)?, &show, &quit],
    )?;
    let mut builder = TrayIconBuilder::with_id("main")
        .tooltip(format!("gpubook — {line}"))
        .menu(&menu)
        .on_menu_event(|app, event| match event.id.as_ref() {
            "show" => crate::show_main(app),
            "quit" => app.exit(0),
            _ => {}
        })
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                ..
            } = event
            {
                crate::show_main(tray.app_handle());
            }
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    let tray = builder.build(app)?;
    tauri::async_runtime::spawn(async move {
        loop {
            // On the minute, so the countdown reads right.
            let secs = 60 - chrono::Utc::now().timestamp() % 60;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(secs as u64)) => {}
                _ = changed.notified() => {
                    // The pump updates its list right before it emits; let a burst settle.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            let line = next_booking_line(&manager.my_bookings(), chrono::Utc::now());
            let _ = next.set_text(&line);
            let _ = tray.set_tooltip(Some(format!("gpubook — {line}")));
        }
    });
    Ok(())
}
