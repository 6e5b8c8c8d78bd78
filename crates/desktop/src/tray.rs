//! The tray's line about the person's next booking, with a countdown.

use chrono::{DateTime, Local, Utc};
use gpubook_core::{Booking, BookingState};

use gpubook_core::duration::human_duration;

/// "Now: “train” on lab1, 1h 20m left", "Next: “train” on lab1 in 35m (Tue 14:00)",
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use gpubook_core::{BookingId, Interval};

    fn b(id: u64, start: DateTime<Utc>, state: BookingState) -> Booking {
        Booking {
            id: BookingId(id),
            owner: "ann".into(),
            gpus: vec![],
            interval: Interval::new(start, start + Duration::hours(2)).unwrap(),
            title: format!("t{id}"),
            state,
            job: None,
            asap: None,
            pending_reason: None,
            pending_since: None,
            created_at: start,
            revision: 1,
            warned_start: false,
            warned_end: false,
            run: None,
            usage: None,
        }
    }

    #[test]
    fn the_line_names_the_current_or_next_booking() {
        let now = Utc::now();
        assert_eq!(next_booking_line(&[], now), "No upcoming bookings");
        let list = vec![
            (
                "lab".to_string(),
                b(1, now + Duration::minutes(95), BookingState::Confirmed),
            ),
            (
                "lab".to_string(),
                b(2, now + Duration::minutes(30), BookingState::Cancelled),
            ),
        ];
        let l = next_booking_line(&list, now);
        assert!(
            l.starts_with("Next: \u{201c}t1\u{201d} on lab in 1h 35m"),
            "{l}"
        );
        let list = vec![(
            "lab".to_string(),
            b(3, now - Duration::minutes(30), BookingState::Active),
        )];
        assert_eq!(
            next_booking_line(&list, now),
            "Now: \u{201c}t3\u{201d} on lab, 1h 30m left"
        );
    }
}
