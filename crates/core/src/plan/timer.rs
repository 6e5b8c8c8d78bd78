//! The slot timer's side of the plan: starts, ends and warnings, and when the next one is due.

use super::*;

impl Plan {
    /// The slot timer: starts, ends and warnings due at `now`, in booking order.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Change> {
        let now = whole_seconds(now);
        let mut changes = Vec::new();
        let live: Vec<BookingId> = self.live.iter().copied().collect();
        for id in live {
            let mut b = self.bookings[&id].clone();
            let mut kinds = Vec::new();
            match b.state {
                BookingState::PendingApproval if b.interval.end <= now && b.asap.is_none() => {
                    b.state = BookingState::Denied;
                    b.pending_reason = Some("its time passed before an admin approved it".into());
                    kinds.push(ChangeKind::Denied);
                }
                BookingState::Confirmed | BookingState::Active => {
                    if b.state == BookingState::Confirmed {
                        if !b.warned_start
                            && now >= before(b.interval.start, START_WARNING)
                            && now < b.interval.start
                        {
                            b.warned_start = true;
                            kinds.push(ChangeKind::SlotStarting);
                        }
                        if now >= b.interval.start {
                            b.warned_start = true;
                            b.state = BookingState::Active;
                            if now < b.interval.end {
                                kinds.push(ChangeKind::Started);
                            }
                        }
                    }
                    if b.state == BookingState::Active {
                        if !b.warned_end
                            && now >= before(b.interval.end, self.policy.end_warning())
                            && now < b.interval.end
                        {
                            b.warned_end = true;
                            kinds.push(ChangeKind::SlotEnding);
                        }
                        if now >= b.interval.end {
                            b.warned_end = true;
                            b.state = BookingState::Ended;
                            kinds.push(ChangeKind::Ended);
                        }
                    }
                }
                _ => {}
            }
            if kinds.is_empty() {
                continue;
            }
            b.revision += 1;
            self.store(b.clone());
            for kind in kinds {
                changes.push(Change {
                    kind,
                    booking: b.clone(),
                    before: None,
                    note: None,
                });
            }
        }
        changes
    }

    /// When [`Plan::tick`] next has something to do, if ever.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.live
            .iter()
            .filter_map(|id| {
                let b = &self.bookings[id];
                let i = b.interval;
                match b.state {
                    BookingState::Confirmed if !b.warned_start => {
                        Some(before(i.start, START_WARNING).min(i.start))
                    }
                    BookingState::Confirmed => Some(i.start),
                    BookingState::Active if !b.warned_end => {
                        Some(before(i.end, self.policy.end_warning()))
                    }
                    BookingState::Active => Some(i.end),
                    BookingState::PendingApproval if b.asap.is_none() => Some(i.end),
                    _ => None,
                }
            })
            .min()
    }
}

/// `d` before `t`, or the first instant there is when that is earlier still (a booking
/// stored at the edge of time must not stop the timer).
fn before(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
