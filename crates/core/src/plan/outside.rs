//! What holds the GPUs outside gpubook (on a Slurm cluster: the jobs Slurm runs and the
//! reservations gpubook did not make): the plan books around it, both at a time asked and "as
//! soon as possible", so that a booking goes to a node Slurm can hold for it instead of one
//! Slurm would refuse.
//!
//! The agent hands the plan what it last read ([`Plan::set_outside`]); it is not stored, and a
//! restarted agent reads it again. Outside holds may overlap one another (two jobs on one GPU
//! for display, a reservation over a node's jobs): per GPU the plan keeps their union.

use super::*;

/// The most holds a refusal names.
const MAX_NAMED: usize = 5;

/// One hold outside gpubook, as the plan books around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outside {
    /// The GPUs it takes.
    pub gpus: Vec<GpuUuid>,
    /// When.
    pub interval: Interval,
    /// What it is, for a refusal: "Slurm job 42: train (bob)".
    pub what: String,
}

impl Plan {
    /// Replaces what holds the GPUs outside gpubook with `holds` (what the agent read last).
    pub fn set_outside(&mut self, holds: Vec<Outside>) {
        let mut per_gpu: HashMap<GpuUuid, Vec<Interval>> = HashMap::new();
        for h in &holds {
            if h.interval.end <= h.interval.start {
                continue;
            }
            for g in &h.gpus {
                per_gpu.entry(g.clone()).or_default().push(h.interval);
            }
        }
        self.outside_busy = per_gpu
            .into_iter()
            .map(|(gpu, mut spans)| {
                spans.sort_by_key(|i| i.start);
                let mut timeline = Timeline::default();
                let mut merged: Vec<Interval> = Vec::new();
                for s in spans {
                    match merged.last_mut() {
                        Some(last) if s.start <= last.end => last.end = last.end.max(s.end),
                        _ => merged.push(s),
                    }
                }
                for (n, i) in merged.iter().enumerate() {
                    timeline.insert(i.start, BookingId(n as u64), i.end);
                }
                (gpu, timeline)
            })
            .collect();
        self.outside = holds;
    }

    /// What holds the GPUs outside gpubook, as last set.
    pub fn outside(&self) -> &[Outside] {
        &self.outside
    }

    /// Whether something outside gpubook holds `gpu` during `interval`.
    pub(super) fn outside_in_way(&self, gpu: &GpuUuid, interval: &Interval) -> bool {
        self.outside_busy
            .get(gpu)
            .is_some_and(|t| !t.overlapping(interval, None).is_empty())
    }

    /// Earliest `t >= from` with `[t, t + d)` free of outside holds on `gpu`.
    pub(super) fn outside_fit(
        &self,
        gpu: &GpuUuid,
        from: DateTime<Utc>,
        d: Duration,
    ) -> DateTime<Utc> {
        self.outside_busy
            .get(gpu)
            .map_or(from, |t| t.next_fit(from, d))
    }

    /// Refuses a request for `gpus` over `interval` that only outside holds stand in the way
    /// of, naming them; `Ok` when bookings other than `exclude` are in the way too (the
    /// conflict names those).
    pub(super) fn refuse_outside(
        &self,
        gpus: &[GpuUuid],
        interval: &Interval,
        exclude: Option<BookingId>,
    ) -> Result<(), PlanError> {
        if !self.conflicts(gpus, interval, exclude).is_empty() {
            return Ok(());
        }
        let in_way: Vec<String> = self
            .outside
            .iter()
            .filter(|h| h.interval.overlaps(interval) && h.gpus.iter().any(|g| gpus.contains(g)))
            .map(|h| {
                format!(
                    "{} from {} to {}",
                    h.what,
                    h.interval.start.format("%Y-%m-%d %H:%M UTC"),
                    h.interval.end.format("%Y-%m-%d %H:%M UTC")
                )
            })
            .collect();
        if in_way.is_empty() {
            return Ok(());
        }
        // A few are enough to say why; a busy cluster can have many.
        let more = in_way.len().saturating_sub(MAX_NAMED);
        let mut named = in_way[..in_way.len().min(MAX_NAMED)].join("; ");
        if more > 0 {
            named.push_str(&format!("; and {more} more"));
        }
        Err(PlanError::Busy(format!(
            "the GPUs are held outside gpubook then: {}; book another time, or ask for the \
             earliest free time (\"As soon as possible…\" in the app, `--asap` with \
             `gpubook book`)",
            named
        )))
    }
}
