//! Bookings and GPUs: each command is one request to the server's agent; the agent decides.

use chrono::{DateTime, Utc};
use gpubook_core::{Booking, Maintenance};
use gpubook_desktop::AsapAnyResponse;
use gpubook_proto::{
    BookRequest, BookingResponse, GpusResponse, MaintenanceResponse, PolicyResponse,
};
use tauri::AppHandle;

use super::{manager, Answer};

/// The GPUs of `server`.
pub async fn gpus(app: &AppHandle, server: String) -> Answer<GpusResponse> {
    manager(app).gpus(&server).await
}

/// The bookings of `server` overlapping `from..to`.
pub async fn bookings(
    app: &AppHandle,
    server: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Answer<Vec<Booking>> {
    manager(app).bookings(&server, from, to).await
}

/// The policy of `server` and the person's role there.
pub async fn policy(app: &AppHandle, server: String) -> Answer<PolicyResponse> {
    manager(app).policy(&server).await
}

/// The maintenance periods of `server` (ended ones included).
pub async fn maintenance(app: &AppHandle, server: String) -> Answer<Vec<Maintenance>> {
    manager(app).maintenance(&server).await
}

/// Takes GPUs of `server` out of service (admins).
pub async fn create_maintenance(
    app: &AppHandle,
    server: String,
    gpus: Option<Vec<String>>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    reason: String,
) -> Answer<MaintenanceResponse> {
    manager(app)
        .create_maintenance(&server, gpus, start, end, reason)
        .await
}

/// Books on `server`.
pub async fn book(
    app: &AppHandle,
    server: String,
    request: BookRequest,
) -> Answer<BookingResponse> {
    manager(app).book(&server, request).await
}

/// Books "as soon as possible" on the connected server where it would start soonest.
pub async fn asap_any(app: &AppHandle, request: BookRequest) -> Answer<AsapAnyResponse> {
    manager(app).asap_any(request).await
}

/// Cancels booking `id`.
pub async fn cancel(app: &AppHandle, server: String, id: u64) -> Answer<BookingResponse> {
    manager(app).cancel(&server, id).await
}

/// Extends booking `id` to `to`.
pub async fn extend(
    app: &AppHandle,
    server: String,
    id: u64,
    to: DateTime<Utc>,
) -> Answer<BookingResponse> {
    manager(app).extend(&server, id, to).await
}

/// Moves booking `id` to `start..end`.
pub async fn move_booking(
    app: &AppHandle,
    server: String,
    id: u64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Answer<BookingResponse> {
    manager(app).move_booking(&server, id, start, end).await
}

/// Releases the rest of booking `id`'s slot.
pub async fn release(app: &AppHandle, server: String, id: u64) -> Answer<BookingResponse> {
    manager(app).release(&server, id).await
}

/// Approves booking `id` (admins) as it was at revision `rev`, the one the panel showed.
pub async fn approve(
    app: &AppHandle,
    server: String,
    id: u64,
    rev: Option<u32>,
) -> Answer<BookingResponse> {
    manager(app).approve(&server, id, rev).await
}

/// Denies booking `id` (admins) as it was at revision `rev`.
pub async fn deny(
    app: &AppHandle,
    server: String,
    id: u64,
    reason: Option<String>,
    rev: Option<u32>,
) -> Answer<BookingResponse> {
    manager(app).deny(&server, id, reason, rev).await
}
