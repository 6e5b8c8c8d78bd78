//! An empty Tauri 2 window showing a one-line page: the baseline the app's memory is measured
//! against (the E2E prints both and their ratio; BENCHMARKS.md). The same Tauri, the same
//! WebKitGTK settings as the app (compositing off unless GPUBOOK_WEBKIT_COMPOSITING=1), no
//! gpubook code: what is left of the app's memory above it is gpubook's own.

fn main() {
    if std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_none()
        && std::env::var_os("GPUBOOK_WEBKIT_COMPOSITING").is_none_or(|v| v != "1")
    {
        // Still single-threaded here: nothing else reads the environment yet.
        std::env::set_var("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
    }
    let mut context = tauri::generate_context!();
    // Not the app's window (it would load the app's page): one of our own below.
    context.config_mut().app.windows.clear();
    tauri::Builder::default()
        .setup(|app| {
            // A one-line page of the app's assets (ui/public/empty.html), served as the app's.
            tauri::WebviewWindowBuilder::new(
                app,
                "empty",
                tauri::WebviewUrl::App("empty.html".into()),
            )
            .title("gpubook empty window")
            .inner_size(1280.0, 800.0)
            .build()?;
            Ok(())
        })
        .run(context)
        .expect("the empty window runs");
}
