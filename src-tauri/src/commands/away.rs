//! News while away (the person's e-mail and webhook targets, sent by the agent itself) and
//! the report of GPU-hours: each command is one request to the server's agent.

use chrono::{DateTime, Utc};
use gpubook_proto::{NotifyResponse, NotifyTarget, ReportResponse};
use tauri::AppHandle;

use super::{manager, Answer};

/// The person's targets on `server` and how their latest deliveries went.
pub async fn notify_show(app: &AppHandle, server: String) -> Answer<NotifyResponse> {
    manager(app).notify_show(&server).await
}

/// Replaces the person's targets on `server`.
pub async fn notify_set(
    app: &AppHandle,
    server: String,
    targets: Vec<NotifyTarget>,
) -> Answer<NotifyResponse> {
    manager(app).notify_set(&server, targets).await
}

/// Removes the person's targets on `server`.
pub async fn notify_clear(app: &AppHandle, server: String) -> Answer<NotifyResponse> {
    manager(app).notify_clear(&server).await
}

/// The report of `server` over `from..to`.
pub async fn report(
    app: &AppHandle,
    server: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Answer<ReportResponse> {
    manager(app).report(&server, from, to).await
}
