//! An empty Tauri 2 window showing a one-line page: the baseline the app's memory is measured
//! against (the E2E prints both and their ratio; BENCHMARKS.md). The same Tauri, the same
//! WebKitGTK settings as the app (`gpubook_app_lib::webkit`, shared with its main.rs), no
//! gpubook code: what is left of the app's memory above it is gpubook's own.

fn main() {
    // The app's own settings, from the same function (compositing and JSC's FTL off).
    gpubook_app_lib::webkit::configure_env();
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
