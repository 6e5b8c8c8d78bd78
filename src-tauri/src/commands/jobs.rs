//! Jobs: the log of a booking's job, and how long to book one.

use std::collections::BTreeMap;

use gpubook_core::S3Access;
use gpubook_proto::{LogsResponse, Request, Response, SuggestRequest, SuggestionResponse};
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

/// The first protocol minor whose agents suggest a length.
const SUGGEST_MINOR: u32 = 3;

/// How long to book `command` on `server` with `gpus` GPUs, from the person's past runs of it
/// there, scaled to the size of what `stage` names (counted by the agent as the person). An
/// agent too old to suggest answers as one with nothing to go by, saying so.
pub async fn suggest_length(
    app: &AppHandle,
    server: String,
    command: String,
    gpus: u32,
    stage: Option<BTreeMap<String, String>>,
    s3: Option<S3Access>,
) -> Answer<SuggestionResponse> {
    let manager = manager(app);
    let (conn, name) = manager.connection(&server)?;
    let w = conn.welcome();
    if w.minor < SUGGEST_MINOR {
        return Ok(SuggestionResponse {
            length_secs: None,
            runs: 0,
            shortest_secs: 0,
            longest_secs: 0,
            scaled: false,
            says: format!(
                "the agent on {name} (protocol {}.{}) is too old to suggest a length",
                w.major, w.minor
            ),
        });
    }
    let req = Request::Suggest(SuggestRequest {
        command,
        gpus,
        stage: stage.unwrap_or_default(),
        s3: s3.unwrap_or_default(),
        ..SuggestRequest::default()
    });
    match manager.request(&server, req).await? {
        Response::Suggestion(s) => Ok(s),
        other => Err(gpubook_desktop::AppError::internal(format!(
            "{name} answered a suggestion with {other:?}"
        ))),
    }
}
