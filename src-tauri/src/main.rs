//! The gpubook desktop app.

fn main() {
    // WebKitGTK's accelerated compositing costs ~150 MiB in the web process and slows the
    // calendar's frames where GL is software (measured in the E2E run: 359 → 207 MiB, drag
    // frames median 46 → 26 ms). Off unless the person sets the variable themselves, or sets
    // GPUBOOK_WEBKIT_COMPOSITING=1 to keep WebKit's default.
    if std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_none()
        && std::env::var_os("GPUBOOK_WEBKIT_COMPOSITING").is_none_or(|v| v != "1")
    {
        // Still single-threaded here: nothing else reads the environment yet.
        std::env::set_var("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
    }
    gpubook_app_lib::run()
}
