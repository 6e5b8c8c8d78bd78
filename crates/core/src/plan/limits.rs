//! What a request must satisfy: GPUs that exist, times on the grid, not in the past and within
//! the horizon, and the lab's policy. What a booking may carry (its title and job) is in
//! `contents`.

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
    /// Where `count` of `candidates` may be taken from: each node's candidates, nodes in the
    /// order of their first GPU, those with at least `count`. A booking by count never spans
    /// nodes (on Slurm a job runs on one); GPUs named one by one (all the candidates) are taken
    /// as named. A plain server is one node.
    pub(super) fn one_node(&self, candidates: &[GpuUuid], count: usize) -> Vec<Vec<GpuUuid>> {
        if count >= candidates.len() || self.gpus.iter().all(|g| g.node.is_none()) {
            return vec![candidates.to_vec()];
        }
        let node_of: std::collections::HashMap<&GpuUuid, &str> = self
            .gpus
            .iter()
            .filter_map(|g| Some((&g.uuid, g.node.as_deref()?)))
            .collect();
        let mut nodes: Vec<(Option<&str>, Vec<GpuUuid>)> = Vec::new();
        for u in candidates {
            let node = node_of.get(u).copied();
            match nodes.iter_mut().find(|(n, _)| *n == node) {
                Some((_, gpus)) => gpus.push(u.clone()),
                None => nodes.push((node, vec![u.clone()])),
            }
        }
        nodes
            .into_iter()
            .map(|(_, gpus)| gpus)
            .filter(|gpus| gpus.len() >= count)
            .collect()
    }

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

    /// The GPUs of node `node` for a booking of `count` of them.
    pub(super) fn on_node(&self, node: &str, count: u32) -> Result<Vec<GpuUuid>, PlanError> {
        if count == 0 {
            return Err(PlanError::Invalid(
                "a booking needs at least one GPU".into(),
            ));
        }
        let gpus: Vec<GpuUuid> = self
            .gpus
            .iter()
            .filter(|g| g.node.as_deref() == Some(node))
            .map(|g| g.uuid.clone())
            .collect();
        if gpus.is_empty() {
            // The name as asked is the asker's: said back in part, whatever its length.
            let shown: String = node.chars().take(64).collect();
            return Err(PlanError::NotFound(format!(
                "this server has no node {shown:?}"
            )));
        }
        if gpus.len() < count as usize {
            return Err(PlanError::Invalid(format!(
                "asks for {count} GPUs of node {node}, which has {}",
                gpus.len()
            )));
        }
        Ok(gpus)
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
        if self.one_node(&eligible, count as usize).is_empty() {
            let most = self
                .one_node(&eligible, 1)
                .iter()
                .map(Vec::len)
                .max()
                .unwrap_or(0);
            return Err(PlanError::Invalid(format!(
                "asks for {count} GPUs on one node; the most a node here has is {most}"
            )));
        }
        Ok(eligible)
    }

    /// Where a requested interval lands on the plan's calendar.
    ///
    /// - A request for now starts at `now` itself, to the second, not on the grid: asking at
    ///   16:23 on a 15-minute grid books from 16:23, not 16:30. A request is for now when its
    ///   start is at or before `now`, or the grid would round it to `now` or earlier, or it
    ///   is off the grid and at most [`START_NOW_TOLERANCE`] after `now` (the client's clock
    ///   may run behind the server's).
    /// - Any later start snaps to the nearest point of the policy's grid; a start on the grid
    ///   stays where it is, even within the tolerance (a booking about to start that is
    ///   moved keeps its start).
    /// - A start the grid rounds to before the current grid slot is in the past: refused.
    /// - The end snaps to the nearest grid point, and is at least the first grid point after
    ///   the start (so a start on the grid keeps at least one slot). It may be no more than
    ///   [`MAX_HORIZON`] after `now`.
    pub(super) fn snap(
        &self,
        requested: Interval,
        now: DateTime<Utc>,
    ) -> Result<Interval, PlanError> {
        refuse_backwards(&requested)?;
        within_horizon("the end", requested.end, now)?;
        let g = self.policy.granularity();
        let rounded = round_to(requested.start, g);
        if rounded < floor_to(now, g) {
            return Err(PlanError::Invalid(format!(
                "the start ({}) is in the past",
                requested.start.format("%Y-%m-%d %H:%M UTC")
            )));
        }
        let soon = now
            .checked_add_signed(START_NOW_TOLERANCE)
            .is_none_or(|soon| requested.start <= soon);
        let for_now = requested.start <= now
            || rounded <= now
            || (soon && floor_to(requested.start, g) != requested.start);
        let start = if for_now { now } else { rounded };
        let first = later(start, Duration::seconds(1)).map(|t| ceil_to(t, g))?;
        let end = round_to(requested.end, g).max(first);
        within_horizon("the end", end, now)?;
        Ok(Interval { start, end })
    }

    pub(super) fn snap_duration(&self, d: Duration) -> Result<Duration, PlanError> {
        if d <= Duration::zero() {
            return Err(PlanError::Invalid(
                "the duration must be more than zero".into(),
            ));
        }
        if d > MAX_HORIZON {
            return Err(PlanError::Invalid(format!(
                "the duration ({}) is longer than the plan books anything ({})",
                crate::duration::format_duration(d),
                crate::duration::format_duration(MAX_HORIZON)
            )));
        }
        let g = self.policy.granularity().num_seconds();
        Ok(Duration::seconds((d.num_seconds() + g - 1) / g * g))
    }

    /// The rules a booking of `count` GPUs over `interval` for `owner` goes beyond, in words.
    /// Admins are held to none.
    ///
    /// `before` is the booking as it was, for a change to one. A change is held only to what
    /// it adds to what was granted (a booking that holds its GPUs): the GPU-seconds it adds to
    /// a week, the GPUs it adds at an instant (a new part of the interval, or more GPUs), a
    /// longer length, a start further ahead. A limit already passed elsewhere (an admin
    /// approved more GPUs at once at another time) does not refuse it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn over_policy(
        &self,
        actor: &Actor,
        owner: &str,
        count: usize,
        interval: &Interval,
        now: DateTime<Utc>,
        before: Option<&Booking>,
        asap: bool,
    ) -> Vec<(Rule, String)> {
        let mut broken = Vec::new();
        if actor.role == Role::Admin {
            return broken;
        }
        let exclude = before.map(|b| b.id);
        let granted = before.filter(|b| b.state.holds_gpus());
        let p = &self.policy;
        if let Some(max) = p.max_booking_secs {
            let length = interval.duration();
            let kept = granted.is_some_and(|b| length <= b.interval.duration());
            if length.num_seconds() > max && !kept {
                broken.push((
                    Rule::MaxBooking,
                    format!("a booking may last at most {}", policy_secs(max)),
                ));
            }
        }
        if let (Some(max), false) = (p.max_ahead_secs, asap) {
            let limit = Duration::try_seconds(max).and_then(|m| now.checked_add_signed(m));
            let kept = granted.is_some_and(|b| interval.start <= b.interval.start);
            if limit.is_some_and(|l| interval.start > l) && !kept {
                broken.push((
                    Rule::MaxAhead,
                    format!("a booking may start at most {} ahead", policy_secs(max)),
                ));
            }
        }
        // Where the change adds GPU time: all of it if it has more GPUs than were granted,
        // else the part of the interval that was not granted. Only there can it newly pass a
        // limit on GPUs at once or on a week's GPU-hours.
        let added: Vec<Interval> = match granted {
            Some(b) if count <= b.gpus.len() => difference(interval, &b.interval),
            _ => vec![*interval],
        };
        if let Some(quota) = p.weekly_quota_gpu_hours {
            if let Some(message) = self.over_quota(owner, count, interval, &added, now, before) {
                broken.push((
                    Rule::WeeklyQuota,
                    format!("{message}, over the weekly quota of {quota}"),
                ));
            }
        }
        if let Some(max) = p.max_gpus_at_once {
            let peak = added
                .iter()
                .map(|part| self.peak_gpus(owner, part, exclude) + count)
                .max()
                .unwrap_or(0);
            if peak > max as usize {
                broken.push((
                    Rule::MaxGpusAtOnce,
                    format!("{owner} would hold {peak} GPUs at once; the limit is {max}"),
                ));
            }
        }
        broken
    }

    /// The first week in which `owner` holding `count` GPUs over `interval` (instead of
    /// `before`) goes over the weekly quota, in words; only weeks the change adds to, through
    /// the `added` parts, are looked at.
    fn over_quota(
        &self,
        owner: &str,
        count: usize,
        interval: &Interval,
        added: &[Interval],
        now: DateTime<Utc>,
        before: Option<&Booking>,
    ) -> Option<String> {
        let limit = i64::from(self.policy.weekly_quota_gpu_hours?) * 3600;
        let was = before.filter(|b| counts_for_quota(b.state));
        // A change adds nothing before now; weeks before the last are not looked at, so a
        // booking stored with a start at the dawn of time cannot make this loop for ages.
        let earliest = week_start(now)
            .checked_sub_signed(Duration::days(7))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        for part in added {
            let mut week = week_start(part.start).max(earliest);
            while week < part.end {
                let next = week.checked_add_signed(Duration::days(7))?;
                let window = Interval {
                    start: week,
                    end: next,
                };
                let new = interval
                    .intersection(&window)
                    .map(|i| i.duration().num_seconds().saturating_mul(count as i64))
                    .unwrap_or(0);
                let old = was.map_or(0, |b| b.gpu_seconds_within(&window));
                if new > old {
                    let total = self
                        .gpu_seconds(owner, &window, before.map(|b| b.id))
                        .saturating_add(new);
                    if total > limit {
                        return Some(format!(
                            "{owner} would hold {:.1} GPU-hours in the week of {}",
                            total as f64 / 3600.0,
                            week.format("%Y-%m-%d")
                        ));
                    }
                }
                week = next;
            }
        }
        None
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

/// `t + d`, or Invalid where that is past the last instant there is.
pub(super) fn later(t: DateTime<Utc>, d: Duration) -> Result<DateTime<Utc>, PlanError> {
    t.checked_add_signed(d).ok_or_else(|| {
        PlanError::Invalid(format!(
            "{} plus {} is beyond the last time there is",
            t.format("%Y-%m-%d %H:%M UTC"),
            crate::duration::format_duration(d)
        ))
    })
}

/// Refuses `t` (what the request calls `what`) more than [`MAX_HORIZON`] after `now`:
/// nobody books that far, and arithmetic on such times could overflow.
pub(super) fn within_horizon(
    what: &str,
    t: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), PlanError> {
    let horizon = now.checked_add_signed(MAX_HORIZON).ok_or_else(|| {
        PlanError::Invalid(format!(
            "the server's clock reads {}, too near the last time there is to book anything",
            now.format("%Y-%m-%d %H:%M UTC")
        ))
    })?;
    if t > horizon {
        return Err(PlanError::Invalid(format!(
            "{what} ({}) is more than {} from now; nothing is booked that far ahead",
            t.format("%Y-%m-%d %H:%M UTC"),
            crate::duration::format_duration(MAX_HORIZON)
        )));
    }
    Ok(())
}

/// The parts of `a` outside `b` (none, one or two).
fn difference(a: &Interval, b: &Interval) -> Vec<Interval> {
    if !a.overlaps(b) {
        return vec![*a];
    }
    [Interval::new(a.start, b.start), Interval::new(b.end, a.end)]
        .into_iter()
        .flatten()
        .collect()
}

/// A policy duration in words (one a policy built by hand could make too long to be one).
fn policy_secs(secs: i64) -> String {
    Duration::try_seconds(secs)
        .map(crate::duration::format_duration)
        .unwrap_or_else(|| format!("{secs} s"))
}

/// Refuses an interval asked backwards (its end not after its start), as it was asked: before
/// the grid could round it into a valid one.
pub(super) fn refuse_backwards(requested: &Interval) -> Result<(), PlanError> {
    if requested.end <= requested.start {
        return Err(PlanError::Invalid("the end must be after the start".into()));
    }
    Ok(())
}
