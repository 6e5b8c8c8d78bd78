//! The gpubook desktop app's Tauri shell: wires gpubook-desktop's manager to the web view,
//! the tray and the window's lifetime. No booking logic lives here.

mod commands;
mod handlers;
mod sink;
mod tray;
pub mod webkit;

use std::sync::Arc;

use gpubook_desktop::notify::DesktopNotifier;
use gpubook_desktop::{local, Files, Manager};
use tauri::{Manager as _, WindowEvent};

/// The main window's label (capabilities/default.json names it).
pub const MAIN_WINDOW: &str = "main";

/// Shows and focuses the main window.
pub(crate) fn show_main(app: &tauri::AppHandle) {
    if let Some(w) = app.get_webview_window(MAIN_WINDOW) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

/// Starts the app.
pub fn run() {
    tauri::Builder::default()
        // First: a second launch hands over to the first and exits.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            show_main(app)
        }))
        .setup(|app| {
            let handle = app.handle().clone();
            let rt = tauri::async_runtime::handle().inner().clone();
            let changed = Arc::new(tokio::sync::Notify::new());
            let manager = Manager::new(
                Files::default(),
                Arc::new(sink::WebviewSink::new(handle.clone(), changed.clone())),
                Arc::new(DesktopNotifier),
                rt,
                // SSH servers of the list: the keyring's secrets (stored with consent).
                gpubook_desktop::prompt::options(),
            );
            // This computer: the pump keeps trying while the agent starts. Linux only; elsewhere
            // the app has SSH servers only.
            #[cfg(target_os = "linux")]
            {
                let socket = local::socket();
                manager.add(
                    "local",
                    "This computer",
                    gpubook_desktop::Address::Unix(socket.clone()),
                );
                std::thread::spawn(move || {
                    if let Err(e) =
                        local::ensure(&socket, &gpubook_desktop::paths::data_dir().join("local"))
                    {
                        eprintln!("gpubook: {e}");
                    }
                });
            }
            #[cfg(not(target_os = "linux"))]
            eprintln!("gpubook: {}", local::NOT_HERE);
            commands::servers::add_saved(&manager);
            app.manage(manager.clone());
            app.manage(commands::calendar::FeedState::start(manager));
            tray::build(app, changed)?;
            Ok(())
        })
        .on_window_event(|window, event| {
            // Closing the window keeps the app (and its notifications) running in the tray.
            if let WindowEvent::CloseRequested { api, .. } = event {
                if window.label() == MAIN_WINDOW {
                    api.prevent_close();
                    let _ = window.hide();
                }
            }
        })
        .invoke_handler(handlers::all())
        .run(tauri::generate_context!())
        .expect("error while running the gpubook app");
}
