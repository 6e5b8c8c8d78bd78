//! Half-open UTC intervals `[start, end)` and snapping to the policy's slot granularity.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// A half-open interval of UTC time, `[start, end)`: a booking ending at 14:00 and one
/// starting at 14:00 do not overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Interval {
    /// First instant inside the interval.
    pub start: DateTime<Utc>,
    /// First instant after the interval.
    pub end: DateTime<Utc>,
}

impl Interval {
    /// An interval; `None` unless `end` is after `start`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Option<Self> {
        (end > start).then_some(Self { start, end })
    }

    /// Length of the interval.
    pub fn duration(&self) -> Duration {
        self.end - self.start
    }

    /// Whether the two intervals share at least one instant.
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Whether `t` lies inside `[start, end)`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }

    /// The part shared with `other`, if any.
    pub fn intersection(&self, other: &Interval) -> Option<Interval> {
        Interval::new(self.start.max(other.start), self.end.min(other.end))
    }
}

/// `t` rounded down to a multiple of `granularity` since the Unix epoch.
pub fn floor_to(t: DateTime<Utc>, granularity: Duration) -> DateTime<Utc> {
    let g = granularity.num_seconds().max(1);
    let s = t.timestamp();
    Utc.timestamp_opt(s.div_euclid(g) * g, 0)
        .single()
        .unwrap_or(t)
}

/// `t` rounded up to a multiple of `granularity` since the Unix epoch; the last instant
/// there is when no multiple lies between `t` and it.
pub fn ceil_to(t: DateTime<Utc>, granularity: Duration) -> DateTime<Utc> {
    let floored = floor_to(t, granularity);
    if floored == t {
        return t;
    }
    let g = granularity.num_seconds().max(1);
    floored
        .timestamp()
        .checked_add(g)
        .and_then(|s| Utc.timestamp_opt(s, 0).single())
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t` rounded to the nearest multiple of `granularity` (halfway rounds up); rounded down
/// when the multiple above is past the last instant there is.
pub fn round_to(t: DateTime<Utc>, granularity: Duration) -> DateTime<Utc> {
    let half = granularity.num_seconds().max(1) / 2;
    match t.checked_add_signed(Duration::seconds(half)) {
        Some(shifted) => floor_to(shifted, granularity),
        None => floor_to(t, granularity),
    }
}

/// `t` truncated to whole seconds: the plan works in seconds, so that sums are exact.
pub fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(t.timestamp(), 0).single().unwrap_or(t)
}

/// Start of the ISO week (Monday 00:00 UTC) that contains `t`: quotas are counted per week.
pub fn week_start(t: DateTime<Utc>) -> DateTime<Utc> {
    // 1970-01-01 was a Thursday; Monday 1969-12-29 00:00 is 3 days before the epoch.
    const WEEK: i64 = 7 * 86_400;
    const MONDAY_OFFSET: i64 = 3 * 86_400;
    let s = t.timestamp() + MONDAY_OFFSET;
    Utc.timestamp_opt(s.div_euclid(WEEK) * WEEK - MONDAY_OFFSET, 0)
        .single()
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn half_open_intervals_touching_do_not_overlap() {
        let a = Interval::new(at("2026-01-01T10:00:00Z"), at("2026-01-01T12:00:00Z")).unwrap();
        let b = Interval::new(at("2026-01-01T12:00:00Z"), at("2026-01-01T13:00:00Z")).unwrap();
        assert!(!a.overlaps(&b));
        assert!(a.contains(at("2026-01-01T10:00:00Z")));
        assert!(!a.contains(at("2026-01-01T12:00:00Z")));
        assert!(Interval::new(a.end, a.end).is_none());
    }

    #[test]
    fn snapping_and_weeks() {
        let g = Duration::minutes(15);
        assert_eq!(
            floor_to(at("2026-01-01T10:07:00Z"), g),
            at("2026-01-01T10:00:00Z")
        );
        assert_eq!(
            ceil_to(at("2026-01-01T10:07:00Z"), g),
            at("2026-01-01T10:15:00Z")
        );
        assert_eq!(
            ceil_to(at("2026-01-01T10:15:00Z"), g),
            at("2026-01-01T10:15:00Z")
        );
        // 2026-11-26 is a Thursday; its week starts Monday 2026-11-23.
        assert_eq!(
            week_start(at("2026-11-26T13:00:00Z")),
            at("2026-11-23T00:00:00Z")
        );
        assert_eq!(
            week_start(at("2026-11-23T00:00:00Z")),
            at("2026-11-23T00:00:00Z")
        );
    }
}
