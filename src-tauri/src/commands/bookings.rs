//! Bookings and GPUs: each command is one request to the server's agent; the agent decides.

use chrono::{DateTime, Utc};
use gpubook_core::Booking;
use gpubook_desktop::{AsapAnyResponse, Manager};
use gpubook_proto::{BookRequest, BookingResponse, GpusResponse, PolicyResponse};
use tauri::State;

use super::Answer;

/// The GPUs of `server`.
#[tauri::command]
pub async fn gpus(m: State<'_, Manager>, server: String) -> Answer<GpusResponse> {
    m.gpus(&server).await
}

/// The bookings of `server` overlapping `from..to`.
#[tauri::command]
pub async fn bookings(
    m: State<'_, Manager>,
    server: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Answer<Vec<Booking>> {
    m.bookings(&server, from, to).await
}

/// The policy of `server` and the person's role there.
#[tauri::command]
pub async fn policy(m: State<'_, Manager>, server: String) -> Answer<PolicyResponse> {
    m.policy(&server).await
}

/// Books on `server`.
#[tauri::command]
pub async fn book(
    m: State<'_, Manager>,
    server: String,
    request: BookRequest,
) -> Answer<BookingResponse> {
    m.book(&server, request).await
}

/// Books "as soon as possible" on the connected server where it would start soonest.
#[tauri::command]
pub async fn asap_any(m: State<'_, Manager>, request: BookRequest) -> Answer<AsapAnyResponse> {
    m.asap_any(request).await
}

/// Cancels booking `id`.
#[tauri::command]
pub async fn cancel(m: State<'_, Manager>, server: String, id: u64) -> Answer<BookingResponse> {
    m.cancel(&server, id).await
}

/// Extends booking `id` to `to`.
#[tauri::command]
pub async fn extend(
    m: State<'_, Manager>,
    server: String,
    id: u64,
    to: DateTime<Utc>,
) -> Answer<BookingResponse> {
    m.extend(&server, id, to).await
}

/// Moves booking `id` to `start..end`.
#[tauri::command]
pub async fn move_booking(
    m: State<'_, Manager>,
    server: String,
    id: u64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Answer<BookingResponse> {
    m.move_booking(&server, id, start, end).await
}

/// Releases the rest of booking `id`'s slot.
#[tauri::command]
pub async fn release(m: State<'_, Manager>, server: String, id: u64) -> Answer<BookingResponse> {
    m.release(&server, id).await
}

/// Approves booking `id` (admins) as it was at revision `rev`, the one the panel showed.
#[tauri::command]
pub async fn approve(
    m: State<'_, Manager>,
    server: String,
    id: u64,
    rev: Option<u32>,
) -> Answer<BookingResponse> {
    m.approve(&server, id, rev).await
}

/// Denies booking `id` (admins) as it was at revision `rev`.
#[tauri::command]
pub async fn deny(
    m: State<'_, Manager>,
    server: String,
    id: u64,
    reason: Option<String>,
    rev: Option<u32>,
) -> Answer<BookingResponse> {
    m.deny(&server, id, reason, rev).await
}
