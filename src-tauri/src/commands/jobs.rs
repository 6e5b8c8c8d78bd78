//! Jobs: the log of a booking's job.

use gpubook_proto::LogsResponse;
use tauri::AppHandle;

use super::{manager, Answer};

/// The log of booking `id`'s job so far, from byte `offset` on (the start when absent), so
/// that an open panel fetches only what was added since. `follow`: true has the rest pushed
/// as "gpubook://log" events as the job writes it (where the server's `follows_logs`), false
/// stops that.
pub async fn job_logs(
    app: &AppHandle,
    server: String,
    id: u64,
    offset: Option<u64>,
    follow: Option<bool>,
) -> Answer<LogsResponse> {
    manager(app)
        .job_logs(&server, id, offset.unwrap_or(0), follow)
        .await
}
