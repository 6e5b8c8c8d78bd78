//! Declares every app command so that capabilities govern them (capabilities/default.json
//! allows exactly these); a command not listed here cannot be invoked.

/// The app's commands, by domain (src/commands/).
const COMMANDS: &[&str] = &[
    // servers
    "servers",
    "add_server",
    "accept_host_key",
    "remove_server",
    "ssh_hosts",
    "sign_in",
    // bookings
    "gpus",
    "bookings",
    "policy",
    "book",
    "asap_any",
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
    "save_ics",
    "feed_url",
    "caldav_status",
    "caldav_login",
    "caldav_logout",
    "caldav_discover",
    "caldav_create_calendar",
];

/// The app embeds ../ui/dist at compile time. Where the UI has not been built (a fresh clone
/// running clippy or the unit tests), a placeholder page stands in so the Rust side still
/// compiles; scripts/app-build.sh builds the real UI first.
fn ensure_frontend() {
    let dist = std::path::Path::new("../ui/dist");
    if !dist.join("index.html").exists() {
        std::fs::create_dir_all(dist).expect("create ../ui/dist");
        std::fs::write(
            dist.join("index.html"),
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>gpubook</title></head>\
             <body><p>The gpubook UI was not built: run scripts/app-build.sh.</p></body></html>\n",
        )
        .expect("write the placeholder page");
    }
}

fn main() {
    ensure_frontend();
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri build step");
}
