//! The web engine's settings, in one place for the app (main.rs) and for the empty window its
//! memory is measured against (examples/empty-window.rs): the ratio in BENCHMARKS.md compares
//! like with like only while both take them from here.

/// Sets WebKitGTK's settings that are read from the environment; call first thing in `main`,
/// while the process is still single-threaded (nothing else reads the environment yet). A
/// variable the person set themselves is left as it is.
///
/// Accelerated compositing is off unless `GPUBOOK_WEBKIT_COMPOSITING=1`: where GL is
/// software it cost ~150 MiB in the web process and slowed the calendar's frames (measured in
/// the E2E: 359 → 207 MiB, drag frames median 46 → 26 ms).
pub fn configure_env() {
    if std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_none()
        && std::env::var_os("GPUBOOK_WEBKIT_COMPOSITING").is_none_or(|v| v != "1")
    {
        std::env::set_var("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
    }
}
