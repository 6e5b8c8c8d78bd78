//! Pushes the manager's news to the web view as Tauri events.

use gpubook_desktop::ipc::events;
use gpubook_desktop::{EventPayload, LogPayload, ReadingsPayload, ServerView, Sink};
use std::sync::Arc;

use tauri::{AppHandle, Emitter};
use tokio::sync::Notify;

/// Emits to every web view of the app, and wakes the tray when a booking changed.
#[derive(Debug)]
pub struct WebviewSink {
    app: AppHandle,
    changed: Arc<Notify>,
}

impl WebviewSink {
    /// A sink for `app`; `changed` is notified on every agent event.
    pub fn new(app: AppHandle, changed: Arc<Notify>) -> Self {
        Self { app, changed }
    }
}

impl Sink for WebviewSink {
    fn server(&self, view: &ServerView) {
        let _ = self.app.emit(events::SERVER, view);
    }

    fn event(&self, payload: &EventPayload) {
        let _ = self.app.emit(events::EVENT, payload);
        self.changed.notify_one();
    }

    fn readings(&self, payload: &ReadingsPayload) {
        let _ = self.app.emit(events::READINGS, payload);
    }

    fn log(&self, payload: &LogPayload) {
        let _ = self.app.emit(events::LOG, payload);
    }
}
