//! The gpubook desktop app.

fn main() {
    // The web engine's settings (compositing and JSC's FTL off), shared with the empty
    // window of the E2E.
    gpubook_app_lib::webkit::configure_env();
    gpubook_app_lib::run()
}
