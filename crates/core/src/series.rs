//! A booking's GPU readings over its slot, kept as a bounded series per GPU: what its panel
//! draws so a person sees at a glance whether the booking was used. Pure: the agent feeds the
//! readings in and keeps the buckets in its store.
//!
//! # Shape and bounds
//! - A series starts at the booking's start (its origin) and is cut into buckets of equal
//!   width: one minute ([`MIN_BUCKET_SECS`]) or a power-of-two multiple of it, the smallest
//!   with which the whole slot fits in the booking's number of points ([`points_per_gpu`]).
//! - A booking keeps at most [`MAX_POINTS_PER_BOOKING`] points over all its GPUs, and at most
//!   [`MAX_POINTS_PER_GPU`] per GPU: a 12-hour slot on up to 4 GPUs is kept per minute, a
//!   week on 8 GPUs per 32 minutes.
//! - A slot extended past what its width holds is made coarser as it runs: the width doubles
//!   and neighbouring buckets merge ([`coarsen`]), so the bound holds whatever happens.
//! - Each bucket keeps the number of readings, their sum and highest utilisation, and their
//!   sum and highest memory in use: means and peaks survive merging exactly.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The narrowest bucket, seconds: one point per minute.
pub const MIN_BUCKET_SECS: i64 = 60;
/// Most points one booking keeps, over all its GPUs: with every field, well under a frame.
pub const MAX_POINTS_PER_BOOKING: usize = 2880;
/// Most points one GPU of a booking keeps: twelve hours of minutes.
pub const MAX_POINTS_PER_GPU: usize = 720;

/// How many points each GPU of a booking of `gpus` GPUs keeps.
pub fn points_per_gpu(gpus: usize) -> usize {
    (MAX_POINTS_PER_BOOKING / gpus.max(1)).clamp(1, MAX_POINTS_PER_GPU)
}

/// The bucket width, seconds, for a slot of `slot_secs` on `gpus` GPUs: the smallest of
/// 60 s × 2ⁿ with which the slot fits in [`points_per_gpu`] buckets.
pub fn bucket_secs(slot_secs: i64, gpus: usize) -> i64 {
    let cap = points_per_gpu(gpus) as i64;
    let mut width = MIN_BUCKET_SECS;
    while (slot_secs.max(1) - 1) / width + 1 > cap && width < i64::MAX / 4 {
        width *= 2;
    }
    width
}

/// Which bucket of a series from `origin` with buckets of `width` seconds holds `at`; `None`
/// before the origin.
pub fn bucket_index(origin: DateTime<Utc>, width: i64, at: DateTime<Utc>) -> Option<i64> {
    let ms = (at - origin).num_milliseconds();
    (ms >= 0).then(|| ms / (width.max(1) * 1000))
}

/// Where bucket `index` starts.
pub fn bucket_start(origin: DateTime<Utc>, width: i64, index: i64) -> DateTime<Utc> {
    origin + Duration::seconds(width.saturating_mul(index))
}

/// The readings of one GPU that fell in one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// How many readings.
    pub readings: u64,
    /// Σ utilisation, percent, over them.
    pub util_sum: f64,
    /// The highest utilisation, percent.
    pub util_max: u32,
    /// Σ memory in use, bytes, over them.
    pub memory_sum: f64,
    /// The most memory in use, bytes.
    pub memory_max: u64,
}

impl Bucket {
    /// Takes one reading.
    pub fn add(&mut self, util: u32, memory: u64) {
        self.readings += 1;
        self.util_sum += f64::from(util);
        self.util_max = self.util_max.max(util);
        self.memory_sum += memory as f64;
        self.memory_max = self.memory_max.max(memory);
    }

    /// Takes another bucket's readings.
    pub fn merge(&mut self, other: &Bucket) {
        self.readings += other.readings;
        self.util_sum += other.util_sum;
        self.util_max = self.util_max.max(other.util_max);
        self.memory_sum += other.memory_sum;
        self.memory_max = self.memory_max.max(other.memory_max);
    }

    /// The point this bucket draws, starting at `at`.
    pub fn point(&self, at: DateTime<Utc>) -> SeriesPoint {
        let n = self.readings.max(1) as f64;
        SeriesPoint {
            at,
            readings: self.readings,
            util_mean: (self.util_sum / n * 10.0).round() / 10.0,
            util_max: self.util_max,
            memory_mean: (self.memory_sum / n).round() as u64,
            memory_max: self.memory_max,
        }
    }
}

/// One point of a GPU's series: its readings over one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct SeriesPoint {
    /// Where the bucket starts, UTC.
    pub at: DateTime<Utc>,
    /// How many readings it holds.
    pub readings: u64,
    /// Mean utilisation of the GPU's cores, percent, to a tenth.
    pub util_mean: f64,
    /// Highest utilisation, percent.
    pub util_max: u32,
    /// Mean memory in use, bytes.
    pub memory_mean: u64,
    /// Most memory in use, bytes.
    pub memory_max: u64,
}

/// The same buckets at twice the width: each pair (2i, 2i+1) becomes bucket i.
pub fn coarsen(buckets: &BTreeMap<i64, Bucket>) -> BTreeMap<i64, Bucket> {
    let mut out: BTreeMap<i64, Bucket> = BTreeMap::new();
    for (i, b) in buckets {
        out.entry(i.div_euclid(2)).or_default().merge(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        "2026-03-02T08:00:00Z".parse().unwrap()
    }

    #[test]
    fn widths_keep_every_slot_within_its_points() {
        assert_eq!(bucket_secs(3600, 1), 60);
        assert_eq!(bucket_secs(12 * 3600, 4), 60);
        assert_eq!(bucket_secs(12 * 3600 + 1, 4), 120);
        assert_eq!(bucket_secs(7 * 24 * 3600, 8), 60 * 32);
        for gpus in [1, 2, 3, 8, 16, 64, 5000] {
            for secs in [1, 59, 60, 3600, 86_400, 7 * 86_400, 3660 * 86_400] {
                let w = bucket_secs(secs, gpus);
                let points = (secs as usize).div_ceil(w as usize);
                assert!(points <= points_per_gpu(gpus), "{secs} s on {gpus}: {w}");
                assert!(points * gpus <= MAX_POINTS_PER_BOOKING.max(gpus));
            }
        }
    }

    #[test]
    fn indices_count_from_the_origin_and_nothing_before_it() {
        let t = t0();
        assert_eq!(bucket_index(t, 60, t), Some(0));
        assert_eq!(bucket_index(t, 60, t + Duration::seconds(59)), Some(0));
        assert_eq!(bucket_index(t, 60, t + Duration::seconds(60)), Some(1));
        assert_eq!(bucket_index(t, 60, t - Duration::milliseconds(1)), None);
        assert_eq!(bucket_start(t, 120, 3), t + Duration::seconds(360));
    }

    #[test]
    fn merging_keeps_means_and_peaks() {
        let mut a = Bucket::default();
        a.add(10, 100);
        a.add(30, 300);
        let mut b = Bucket::default();
        b.add(90, 50);
        let map: BTreeMap<i64, Bucket> = [(0, a), (1, b), (5, b)].into_iter().collect();
        let c = coarsen(&map);
        assert_eq!(c.len(), 2);
        let p = c[&0].point(t0());
        assert_eq!((p.readings, p.util_mean, p.util_max), (3, 43.3, 90));
        assert_eq!((p.memory_mean, p.memory_max), (150, 300));
        assert_eq!(c[&2].readings, 1);
    }
}
