//! What a request must satisfy: GPUs that exist, times on the grid and not in the past, a sane
//! job, and the lab's policy.

use super::*;

impl Plan {
    pub(super) fn check_named(&self, gpus: &[GpuUuid]) -> Result<(), PlanError> {
        if gpus.is_empty() {
            return Err(PlanError::Invalid(
                "a booking needs at least one GPU".into(),
            ));
        }
        let mut seen = HashSet::new();
        for g in gpus {
            if !self.gpus.iter().any(|known| &known.uuid == g) {
                return Err(PlanError::NotFound(format!(
                    "there is no GPU {g} on this server"
                )));
            }
            if !seen.insert(g) {
                return Err(PlanError::Invalid(format!("GPU {g} is named twice")));
            }
        }
        if gpus.len() > self.gpus.len() {
            return Err(PlanError::Invalid(format!(
                "asks for {} GPUs; this server has {}",
                gpus.len(),
                self.gpus.len()
            )));
        }
        Ok(())
    }

    /// `gpus` sorted by their index (what CUDA_VISIBLE_DEVICES lists, in that order).
    pub(super) fn in_index_order(&self, mut gpus: Vec<GpuUuid>) -> Vec<GpuUuid> {
        gpus.sort_by_key(|u| {
            self.gpus
                .iter()
                .find(|g| &g.uuid == u)
                .map(|g| g.index)
                .unwrap_or(u32::MAX)
        });
        gpus
    }

    pub(super) fn eligible(
        &self,
        count: u32,
        min_memory: Option<u64>,
    ) -> Result<Vec<GpuUuid>, PlanError> {
        if count == 0 {
            return Err(PlanError::Invalid(
                "a booking needs at least one GPU".into(),
            ));
        }
        if count as usize > self.gpus.len() {
            return Err(PlanError::Invalid(format!(
                "asks for {count} GPUs; this server has {}",
                self.gpus.len()
            )));
        }
        let eligible: Vec<GpuUuid> = self
            .gpus
            .iter()
            .filter(|g| min_memory.is_none_or(|m| g.memory_total >= m))
            .map(|g| g.uuid.clone())
            .collect();
        if eligible.len() < count as usize {
            return Err(PlanError::Invalid(format!(
                "asks for {count} GPUs with at least {:.0} GiB; this server has {} such GPUs",
                min_memory.unwrap_or(0) as f64 / (1u64 << 30) as f64,
                eligible.len()
            )));
        }
        Ok(eligible)
    }

    /// `requested` snapped to the nearest grid points (keeping at least one slot), checked
    /// not to start in the past.
    pub(super) fn snap(
        &self,
        requested: Interval,
        now: DateTime<Utc>,
    ) -> Result<Interval, PlanError> {
        forwards(&requested)?;
        let g = self.policy.granularity();
        let start = round_to(requested.start, g);
        let end = round_to(requested.end, g).max(start + g);
        if start < floor_to(now, g) {
            return Err(PlanError::Invalid(format!(
                "the start ({}) is in the past",
                requested.start.format("%Y-%m-%d %H:%M UTC")
            )));
        }
        Ok(Interval { start, end })
    }

    pub(super) fn snap_duration(&self, d: Duration) -> Result<Duration, PlanError> {
        if d <= Duration::zero() {
            return Err(PlanError::Invalid(
                "the duration must be more than zero".into(),
            ));
        }
        let g = self.policy.granularity_secs;
        Ok(Duration::seconds((d.num_seconds() + g - 1) / g * g))
    }

    /// The rules a booking of `count` GPUs over `interval` for `owner` goes beyond, in words.
    /// Admins are held to none.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn over_policy(
        &self,
        actor: &Actor,
        owner: &str,
        count: usize,
        interval: &Interval,
        now: DateTime<Utc>,
        exclude: Option<BookingId>,
        asap: bool,
    ) -> Vec<(Rule, String)> {
        let mut broken = Vec::new();
        if actor.role == Role::Admin {
            return broken;
        }
        let p = &self.policy;
        if let Some(max) = p.max_booking_secs {
            if interval.duration().num_seconds() > max {
                broken.push((
                    Rule::MaxBooking,
                    format!(
                        "a booking may last at most {}",
                        crate::duration::format_duration(Duration::seconds(max))
                    ),
                ));
            }
        }
        if let (Some(max), false) = (p.max_ahead_secs, asap) {
            if interval.start > now + Duration::seconds(max) {
                broken.push((
                    Rule::MaxAhead,
                    format!(
                        "a booking may start at most {} ahead",
                        crate::duration::format_duration(Duration::seconds(max))
                    ),
                ));
            }
        }
        if let Some(quota) = p.weekly_quota_gpu_hours {
            let limit = i64::from(quota) * 3600;
            let mut week = week_start(interval.start);
            while week < interval.end {
                let window = Interval {
                    start: week,
                    end: week + Duration::days(7),
                };
                let new = interval
                    .intersection(&window)
                    .map(|i| i.duration().num_seconds() * count as i64)
                    .unwrap_or(0);
                let used = self.gpu_seconds(owner, &window, exclude);
                if used + new > limit {
                    broken.push((
                        Rule::WeeklyQuota,
                        format!(
                            "{owner} would hold {:.1} GPU-hours in the week of {}, over the \
                             weekly quota of {quota}",
                            (used + new) as f64 / 3600.0,
                            week.format("%Y-%m-%d")
                        ),
                    ));
                    break;
                }
                week = window.end;
            }
        }
        if let Some(max) = p.max_gpus_at_once {
            let peak = self.peak_gpus(owner, interval, exclude) + count;
            if peak > max as usize {
                broken.push((
                    Rule::MaxGpusAtOnce,
                    format!("{owner} would hold {peak} GPUs at once; the limit is {max}"),
                ));
            }
        }
        broken
    }

    /// Most GPUs `owner` holds at any moment of `interval`.
    pub(super) fn peak_gpus(
        &self,
        owner: &str,
        interval: &Interval,
        exclude: Option<BookingId>,
    ) -> usize {
        let mut edges: Vec<(DateTime<Utc>, i64)> = Vec::new();
        for b in self.owned_near(owner, interval) {
            if Some(b.id) == exclude || !b.state.holds_gpus() {
                continue;
            }
            if let Some(i) = b.interval.intersection(interval) {
                edges.push((i.start, b.gpus.len() as i64));
                edges.push((i.end, -(b.gpus.len() as i64)));
            }
        }
        // Ends sort before starts at the same instant: half-open intervals.
        edges.sort();
        let (mut now, mut peak) = (0i64, 0i64);
        for (_, delta) in edges {
            now += delta;
            peak = peak.max(now);
        }
        peak as usize
    }
}

/// Bounds on a job's parts: a booking must always fit one frame when it is listed.
pub(super) fn check_job(j: &JobSpec) -> Result<(), PlanError> {
    const COMMAND: usize = 16 * 1024;
    const PATH: usize = 4096;
    const VARS: usize = 128;
    const VALUE: usize = 4096;
    let invalid = |m: String| Err(PlanError::Invalid(m));
    if j.command.trim().is_empty() {
        return invalid("the job's command is empty".into());
    }
    if j.command.len() > COMMAND {
        return invalid(format!("the job's command is longer than {COMMAND} bytes"));
    }
    if j.cwd.as_ref().is_some_and(|c| c.len() > PATH) {
        return invalid(format!(
            "the job's working directory is longer than {PATH} bytes"
        ));
    }
    if let Some(sig) = &j.end_signal {
        if crate::booking::canonical_signal(sig).is_none() {
            return invalid(format!(
                "{sig:?} is not a signal a job can be sent at its end; use one of {}",
                crate::booking::JOB_SIGNALS.join(", ")
            ));
        }
    }
    if j.grace_secs.is_some_and(|g| g > 3600) {
        return invalid("the grace period may be at most 3600 seconds".into());
    }
    if j.env.len() > VARS {
        return invalid(format!(
            "the job sets more than {VARS} environment variables"
        ));
    }
    if let Some((k, _)) = j
        .env
        .iter()
        .find(|(k, v)| k.is_empty() || k.contains('=') || k.len() + v.len() > VALUE)
    {
        return invalid(format!(
            "the job's environment variable {k:?} is empty, contains '=', or is over {VALUE} bytes"
        ));
    }
    Ok(())
}

pub(super) fn check_title(title: &str) -> Result<(), PlanError> {
    if title.chars().count() > MAX_TITLE {
        return Err(PlanError::Invalid(format!(
            "the title is longer than {MAX_TITLE} characters"
        )));
    }
    if title.chars().any(|c| c.is_control()) {
        return Err(PlanError::Invalid(
            "the title contains control characters".into(),
        ));
    }
    Ok(())
}

/// Refuses an interval asked backwards (its end not after its start), as it was asked: before
/// the grid could round it into a valid one.
pub(super) fn forwards(requested: &Interval) -> Result<(), PlanError> {
    if requested.end <= requested.start {
        return Err(PlanError::Invalid("the end must be after the start".into()));
    }
    Ok(())
}
