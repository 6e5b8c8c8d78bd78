//! How booked GPUs were used: a booking's utilisation and memory over its slot.

use gpubook_proto::{Request, Response, UsageSeriesRequest, UsageSeriesResponse};
use tauri::AppHandle;

use super::{manager, Answer};

/// Booking `id`'s GPU series on `server` (its owner and admins; the agent refuses anyone else
/// with `not_allowed`).
pub async fn usage_series(app: &AppHandle, server: String, id: u64) -> Answer<UsageSeriesResponse> {
    let req = Request::UsageSeries(UsageSeriesRequest {
        id: gpubook_core::BookingId(id),
    });
    match manager(app).request(&server, req).await? {
        Response::UsageSeries(s) => Ok(s),
        other => Err(gpubook_desktop::AppError::internal(format!(
            "{server} answered a GPU series with {other:?}"
        ))),
    }
}
