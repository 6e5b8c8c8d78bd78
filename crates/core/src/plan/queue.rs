//! "As soon as possible": the earliest start at which the GPUs are free, and the queue that moves
//! earlier when capacity frees.

use super::*;
use crate::time::ceil_to;

/// How many later starts on the grid the queue tries for a booking whose earliest fit breaks
/// its owner's policy (two days of 15-minute slots, and then some).
const MAX_POLICY_STEPS: usize = 256;

impl Plan {
    /// Where an "as soon as possible" request goes: the earliest start at or after `from`
    /// at which `count` of `candidates` are free for `d`, all on one node (see
    /// [`Plan::one_node`]), and which of them (lowest index first). `None` when no node has
    /// `count` candidates.
    pub fn place(
        &self,
        candidates: &[GpuUuid],
        count: usize,
        d: Duration,
        from: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, Vec<GpuUuid>)> {
        let mut best: Option<(DateTime<Utc>, Vec<GpuUuid>)> = None;
        for node in self.one_node(candidates, count) {
            if let Some((start, gpus)) = self.place_on(&node, count, d, from) {
                if best.as_ref().is_none_or(|(b, _)| start < *b) {
                    best = Some((start, gpus));
                }
            }
        }
        best
    }

    /// [`Plan::place`] among `candidates` as they are.
    fn place_on(
        &self,
        candidates: &[GpuUuid],
        count: usize,
        d: Duration,
        from: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, Vec<GpuUuid>)> {
        if count == 0 || candidates.len() < count {
            return None;
        }
        let mut t = from;
        let mut fits: Vec<DateTime<Utc>> =
            candidates.iter().map(|g| self.next_fit(g, t, d)).collect();
        loop {
            let mut sorted = fits.clone();
            sorted.sort();
            let nth = sorted[count - 1];
            if nth == t {
                let chosen = candidates
                    .iter()
                    .zip(&fits)
                    .filter(|(_, f)| **f == t)
                    .map(|(g, _)| g.clone())
                    .take(count)
                    .collect();
                return Some((t, chosen));
            }
            // No start in [t, nth) has `count` GPUs free; a GPU whose fit is at or after
            // `nth` keeps it (it was the earliest after the old t, so also after `nth`).
            t = nth;
            for (g, f) in candidates.iter().zip(fits.iter_mut()) {
                if *f < t {
                    *f = self.next_fit(g, t, d);
                }
            }
        }
    }

    /// Moves "as soon as possible" bookings that have not started to the earliest start now
    /// free, in the order they were asked; never later than they were, and never beyond the
    /// policy (a move that would break it is not made). Repeats until nothing moves: a later
    /// request moving out of the way can free room for an earlier one. Every move is strictly
    /// earlier, so this ends; the pass limit is a guard, not a rule.
    pub(super) fn pull_forward(&mut self, now: DateTime<Utc>) -> Vec<Change> {
        let mut changes = Vec::new();
        for _ in 0..=self.asap.len().min(64) {
            let queue: Vec<BookingId> = self.asap.iter().map(|(_, id)| *id).collect();
            let mut any = false;
            for id in queue {
                if let Some(mut change) = self.pull_one(id, now) {
                    any = true;
                    // One event per booking per change: a second move keeps the first's
                    // "before", so the event says where it was when the change began.
                    if let Some(i) = changes.iter().position(|c: &Change| c.booking.id == id) {
                        change.before = changes.remove(i).before;
                    }
                    changes.push(change);
                }
            }
            if !any {
                break;
            }
        }
        changes
    }

    pub(super) fn pull_one(&mut self, id: BookingId, now: DateTime<Utc>) -> Option<Change> {
        let b = self.bookings[&id].clone();
        if b.state != BookingState::Confirmed || b.interval.start <= now {
            return None;
        }
        let asap = b.asap.clone()?;
        // A stored request no booking could be (by a bug, or by hand) stays where it is.
        if asap.duration() <= Duration::zero() || asap.duration() > MAX_HORIZON {
            return None;
        }
        let (candidates, count) = self.asap_candidates(&asap);
        // Look for room as if it were not there; put it back if it does not move.
        self.unhold(&b);
        let owner = Actor {
            user: b.owner.clone(),
            role: if asap.exempt { Role::Admin } else { Role::User },
        };
        // The earliest start where the GPUs are free and the owner stays within the policy.
        // Where the first fit breaks a limit (a weekly quota the move would overrun, say),
        // later starts on the policy's grid are tried, up to where the booking is now: a
        // quota that a later start keeps is met there.
        let mut from = now;
        let mut moved = None;
        for _ in 0..MAX_POLICY_STEPS {
            let Some((start, gpus)) = self.place(&candidates, count, asap.duration(), from) else {
                break;
            };
            if start >= b.interval.start {
                break;
            }
            let Some(end) = start.checked_add_signed(asap.duration()) else {
                break;
            };
            let interval = Interval { start, end };
            if self
                .over_policy(&owner, &b.owner, gpus.len(), &interval, now, Some(&b), true)
                .is_empty()
            {
                moved = Some((interval, gpus));
                break;
            }
            let Some(next) = start.checked_add_signed(Duration::seconds(1)) else {
                break;
            };
            from = ceil_to(next, self.policy.granularity());
        }
        let Some((interval, gpus)) = moved else {
            self.hold(&b);
            return None;
        };
        let mut new = b.clone();
        new.interval = interval;
        new.gpus = gpus;
        new.revision += 1;
        new.warned_start = false;
        new.warned_end = false;
        self.store(new.clone());
        Some(Change {
            kind: ChangeKind::MovedEarlier,
            booking: new,
            before: Some(b.interval),
            note: None,
        })
    }

    pub(super) fn asap_candidates(&self, asap: &AsapRequest) -> (Vec<GpuUuid>, usize) {
        if asap.named.is_empty() {
            let eligible = self
                .gpus
                .iter()
                .filter(|g| asap.min_memory.is_none_or(|m| g.memory_total >= m))
                .filter(|g| asap.node.is_none() || g.node == asap.node)
                .map(|g| g.uuid.clone())
                .collect();
            (eligible, asap.count as usize)
        } else {
            (asap.named.clone(), asap.named.len())
        }
    }
}
