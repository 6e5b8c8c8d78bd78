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
                            // A slot too short for its end warning to tell anything new has
                            // its end announced with its start (see [`warns_end`]).
                            if !warns_end(&b, self.policy.end_warning()) {
                                b.warned_end = true;
                            }
                            if now < b.interval.end {
                                kinds.push(ChangeKind::Started);
                            }
                        }
                    }
                    if b.state == BookingState::Active {
                        if !b.warned_end
                            && warns_end(&b, self.policy.end_warning())
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
                    BookingState::Active
                        if !b.warned_end && warns_end(b, self.policy.end_warning()) =>
                    {
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

/// Whether a slot gets its own "ends in 10 minutes" warning: only when the warning comes at
/// least `end_warning` after the slot's start, so a slot shorter than twice `end_warning` is
/// not warned at (or just after) its start, when "started, yours until 14:10" has just said
/// the same. Such a slot is marked warned as it starts, and the start's notice carries the end
/// (and the offer to extend). A slot whose end moves is judged again on its new length.
fn warns_end(b: &Booking, end_warning: Duration) -> bool {
    b.interval.end - b.interval.start >= end_warning + end_warning
}

/// `d` before `t`, or the first instant there is when that is earlier still (a booking
/// stored at the edge of time must not stop the timer).
fn before(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
