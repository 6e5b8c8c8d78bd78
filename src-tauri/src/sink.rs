//! Pushes the manager's news to the web view as Tauri events.

use gpubook_desktop::ipc::events;
use gpubook_desktop::{EventPayload, ReadingsPayload, ServerView, Sink};
use tauri::{AppHandle, Emitter};

/// Emits to every web view of the app.
#[derive(Debug)]
pub struct WebviewSink {
    app: AppHandle,
}

impl WebviewSink {
    /// A sink for `app`.
    pub fn new(app: AppHandle) -> Self {
        Self { app }
    }
}

impl Sink for WebviewSink {
    fn server(&self, view: &ServerView) {
        let _ = self.app.emit(events::SERVER, view);
    }

    fn event(&self, payload: &EventPayload) {
        let _ = self.app.emit(events::EVENT, payload);
    }

    fn readings(&self, payload: &ReadingsPayload) {
        let _ = self.app.emit(events::READINGS, payload);
    }
}
