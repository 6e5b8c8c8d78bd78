//! Declares every app command so that capabilities govern them (capabilities/default.json
//! allows exactly these); a command not listed here cannot be invoked.

/// The app's commands, by domain (src/commands/).
const COMMANDS: &[&str] = &[
    // servers
    "servers",
    "add_server",
    "accept_host_key",
    "remove_server",
    // bookings
    "gpus",
    "bookings",
    "policy",
    "book",
    "cancel",
    "extend",
    "move_booking",
    "release",
    "approve",
    "deny",
    // jobs
    "job_logs",
    // settings
    "settings",
    "set_settings",
    // calendar export
    "export_ics",
    "feed_url",
];

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri build step");
}
