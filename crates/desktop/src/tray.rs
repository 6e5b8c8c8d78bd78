//! The tray's line about the person's next booking, with a countdown.

use chrono::{DateTime, Local, Utc};
use gpubook_core::{Booking, BookingState};

use crate::notify::human_duration;

/// "Now: “train” on lab1, 1 h 20 min left", "Next: “train” on lab1 in 35 min (Tue 14:00)",
/// or "No upcoming bookings". `bookings` are (server name, booking).
pub fn next_booking_line(bookings: &[(String, Booking)], now: DateTime<Utc>) -> String {
    let live = bookings.iter().filter(|(_, b)| {
        matches!(
            b.state,
            BookingState::Confirmed | BookingState::Active | BookingState::PendingApproval
        ) && b.interval.end > now
    });
    let Some((server, b)) = live.min_by_key(|(_, b)| (b.interval.start, b.id)) else {
        return "No upcoming bookings".to_string();
    };
    let title = if b.title.trim().is_empty() {
        format!("booking {}", b.id.0)
    } else {
        format!("\u{201c}{}\u{201d}", b.title)
    };
    if b.interval.start <= now {
        format!(
            "Now: {title} on {server}, {} left",
            human_duration(b.interval.end - now)
        )
    } else {
        let at = b.interval.start.with_timezone(&Local).format("%a %H:%M");
        let pending = if b.state == BookingState::PendingApproval {
            ", awaiting approval"
        } else {
            ""
        };
        format!(
            "Next: {title} on {server} in {} ({at}){pending}",
            human_duration(b.interval.start - now)
        )
    }
}
