//! The web engine's settings, in one place for the app (main.rs) and for the empty window its
//! memory is measured against (examples/empty-window.rs): the ratio in BENCHMARKS.md compares
//! like with like only while both take them from here.

/// Sets WebKitGTK's settings that are read from the environment (the web process inherits
/// them); call first thing in `main`, while the process is still single-threaded (nothing else
/// reads the environment yet). A variable the person set themselves is left as it is.
///
/// - Accelerated compositing is off unless `GPUBOOK_WEBKIT_COMPOSITING=1`: where GL is
///   software it cost ~150 MiB in the web process and slowed the calendar's frames (measured
///   in the E2E: 359 → 207 MiB, drag frames median 46 → 26 ms).
/// - JavaScriptCore's top tier (FTL) is off unless `GPUBOOK_WEBKIT_FTL=1`: it holds 3 MiB in
///   the web process, and the calendar's frames, loads and pushed changes measured the same
///   without it (release E2E, BENCHMARKS.md). The tiers below it (the interpreter, the
///   baseline and DFG JITs) stay: without DFG drag frames missed 16 ms.
pub fn configure_env() {
    set_unless(
        "WEBKIT_DISABLE_COMPOSITING_MODE",
        "1",
        "GPUBOOK_WEBKIT_COMPOSITING",
    );
    set_unless("JSC_useFTLJIT", "0", "GPUBOOK_WEBKIT_FTL");
}

/// Sets `name` to `value` unless it is set already or `keep_default` is `1`.
fn set_unless(name: &str, value: &str, keep_default: &str) {
    if std::env::var_os(name).is_none() && std::env::var_os(keep_default).is_none_or(|v| v != "1") {
        std::env::set_var(name, value);
    }
}
