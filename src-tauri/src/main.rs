//! The gpubook desktop app.
fn main() {
    gpubook_app_lib::run()
}
