//! Pushes the manager's news to the web view as the contract's events (docs/app-contract.md).

use gpubook_desktop::contract::{events, AppEvent};
use gpubook_desktop::{EventPayload, LogPayload, ReadingsPayload, ServerView, Sink};
use std::sync::Arc;

use tauri::{AppHandle, Emitter};
use tokio::sync::Notify;

/// Pushes event `E` to every web view of the app; its payload type is the declared one.
pub fn emit<E: AppEvent>(app: &AppHandle, payload: &E::Payload) {
    let _ = app.emit(E::NAME, payload);
}

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
        emit::<events::Server>(&self.app, view);
    }

    fn event(&self, payload: &EventPayload) {
        emit::<events::Event>(&self.app, payload);
        self.changed.notify_one();
    }

    fn readings(&self, payload: &ReadingsPayload) {
        emit::<events::Readings>(&self.app, payload);
    }

    fn log(&self, payload: &LogPayload) {
        emit::<events::Log>(&self.app, payload);
    }
}
