//! One GPU's time: the bookings holding it and, kept in step, the free gaps between them,
//! indexed by length class, so "the earliest free stretch of length `d` after `t`" skips every
//! gap that is too short instead of walking the whole calendar.

use crate::booking::BookingId;
use crate::time::Interval;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;

/// Gap length thresholds, in minutes: class `k` holds every gap at least `CLASSES[k]` long.
/// Factors of four keep the index small; a query scans the largest class not above `d`.
const CLASSES: [i64; 10] = [0, 1, 4, 16, 64, 256, 1024, 4096, 16_384, 65_536];

/// The bookings holding one GPU and the free gaps between them.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// (start, booking) → end. Holding bookings never overlap, so ends ascend with starts.
    holds: BTreeMap<(DateTime<Utc>, BookingId), DateTime<Utc>>,
    /// Per length class, free gaps: start → end. The last gap runs to the end of time.
    gaps: Vec<BTreeMap<DateTime<Utc>, DateTime<Utc>>>,
}

impl Default for Timeline {
    fn default() -> Self {
        let mut t = Timeline {
            holds: BTreeMap::new(),
            gaps: vec![BTreeMap::new(); CLASSES.len()],
        };
        t.add_gap(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        t
    }
}

fn class_of(len: Duration) -> usize {
    let minutes = len.num_minutes();
    CLASSES.iter().rposition(|c| minutes >= *c).unwrap_or(0)
}

impl Timeline {
    /// Whether no booking holds the GPU.
    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }

    /// Records that `id` holds the GPU over `[start, end)`.
    pub fn insert(&mut self, start: DateTime<Utc>, id: BookingId, end: DateTime<Utc>) {
        if let Some(old_end) = self.holds.insert((start, id), end) {
            if old_end != end {
                self.rebuild();
            }
            return;
        }
        // The gap that contains the new hold; there is one unless holds overlap (which the
        // plan never does, but stored data is not trusted to be perfect).
        let containing = self.gaps[0]
            .range(..=start)
            .next_back()
            .map(|(s, e)| (*s, *e))
            .filter(|(_, e)| *e >= end);
        match containing {
            Some((gs, ge)) => {
                self.remove_gap(gs, ge);
                if gs < start {
                    self.add_gap(gs, start);
                }
                if end < ge {
                    self.add_gap(end, ge);
                }
            }
            None => self.rebuild(),
        }
    }

    /// Forgets the hold of `id` starting at `start`; false if there was none.
    pub fn remove(&mut self, start: DateTime<Utc>, id: BookingId) -> bool {
        let Some(end) = self.holds.remove(&(start, id)) else {
            return false;
        };
        let before = self.gaps[0]
            .range(..=start)
            .next_back()
            .map(|(s, e)| (*s, *e))
            .filter(|(_, e)| *e == start);
        let after = self.gaps[0].get(&end).map(|e| (end, *e));
        let mut gs = start;
        let mut ge = end;
        if let Some((s, e)) = before {
            self.remove_gap(s, e);
            gs = s;
        }
        if let Some((s, e)) = after {
            self.remove_gap(s, e);
            ge = e;
        }
        if self.covered(gs, ge) {
            // Another hold overlapped this one (untrusted data): recompute.
            self.rebuild();
        } else {
            self.add_gap(gs, ge);
        }
        true
    }

    /// Whether some hold still covers part of `[s, e)`.
    fn covered(&self, s: DateTime<Utc>, e: DateTime<Utc>) -> bool {
        self.holds
            .range(..(e, BookingId(0)))
            .next_back()
            .is_some_and(|(_, end)| *end > s)
    }

    /// Bookings holding the GPU at some instant of `interval`, other than `exclude`.
    pub fn overlapping(&self, interval: &Interval, exclude: Option<BookingId>) -> Vec<BookingId> {
        let mut out = Vec::new();
        // Starts before `interval.end`, latest first; ends descend the same way, so stop at
        // the first that ends at or before `interval.start`.
        for ((_, id), end) in self.holds.range(..(interval.end, BookingId(0))).rev() {
            if Some(*id) == exclude {
                continue;
            }
            if *end <= interval.start {
                break;
            }
            out.push(*id);
        }
        out
    }

    /// Earliest `t >= from` with `[t, t + d)` free.
    pub fn next_fit(&self, from: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
        let class = &self.gaps[class_of(d)];
        if let Some((_, ge)) = class.range(..=from).next_back() {
            if *ge > from && *ge - from >= d {
                return from;
            }
        }
        for (gs, ge) in class.range(from..) {
            if *ge - *gs >= d {
                return *gs;
            }
        }
        // Unreachable: the last gap runs to the end of time and is in every class.
        DateTime::<Utc>::MAX_UTC
    }

    fn add_gap(&mut self, s: DateTime<Utc>, e: DateTime<Utc>) {
        let top = class_of(e - s);
        for class in &mut self.gaps[..=top] {
            class.insert(s, e);
        }
    }

    fn remove_gap(&mut self, s: DateTime<Utc>, e: DateTime<Utc>) {
        let top = class_of(e - s);
        for class in &mut self.gaps[..=top] {
            class.remove(&s);
        }
    }

    /// Recomputes the gaps as the complement of the union of the holds.
    fn rebuild(&mut self) {
        for class in &mut self.gaps {
            class.clear();
        }
        let mut cursor = DateTime::<Utc>::MIN_UTC;
        let spans: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            self.holds.iter().map(|((s, _), e)| (*s, *e)).collect();
        for (s, e) in spans {
            if s > cursor {
                self.add_gap(cursor, s);
            }
            cursor = cursor.max(e);
        }
        self.add_gap(cursor, DateTime::<Utc>::MAX_UTC);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + Duration::minutes(min)
    }

    /// The earliest fit found by walking every minute: the reference.
    fn brute_fit(holds: &[(i64, i64)], from: i64, d: i64) -> i64 {
        (from..)
            .find(|t| holds.iter().all(|(s, e)| t + d <= *s || *e <= *t))
            .unwrap()
    }

    #[test]
    fn next_fit_matches_a_minute_by_minute_walk() {
        // A deterministic mix of holds with gaps of many lengths, then some removed again.
        let mut tl = Timeline::default();
        let mut holds = Vec::new();
        let mut t = 0;
        for i in 0..300i64 {
            let len = 1 + (i * 37) % 90;
            let gap = (i * 53) % 300 / (1 + i % 4);
            holds.push((t + gap, t + gap + len, i as u64));
            t += gap + len;
        }
        for (s, e, id) in &holds {
            tl.insert(at(*s), BookingId(*id), at(*e));
        }
        for (s, _, id) in holds.iter().filter(|(_, _, id)| id % 3 == 0) {
            assert!(tl.remove(at(*s), BookingId(*id)));
        }
        let kept: Vec<(i64, i64)> = holds
            .iter()
            .filter(|(_, _, id)| id % 3 != 0)
            .map(|(s, e, _)| (*s, *e))
            .collect();
        for from in (0..t).step_by(97) {
            for d in [1, 5, 17, 60, 200, 400, 2000] {
                assert_eq!(
                    tl.next_fit(at(from), Duration::minutes(d)),
                    at(brute_fit(&kept, from, d)),
                    "from {from}, d {d}"
                );
            }
        }
        assert!(!tl.remove(at(-5), BookingId(999)));
    }

    #[test]
    fn overlapping_holds_from_bad_data_still_give_correct_fits() {
        let mut tl = Timeline::default();
        tl.insert(at(0), BookingId(1), at(60));
        tl.insert(at(30), BookingId(2), at(90));
        assert_eq!(tl.next_fit(at(0), Duration::minutes(10)), at(90));
        assert!(tl.remove(at(0), BookingId(1)));
        assert_eq!(tl.next_fit(at(0), Duration::minutes(10)), at(0));
        assert_eq!(tl.next_fit(at(25), Duration::minutes(10)), at(90));
    }
}
