//! The runner's patrol, once a second: slots past their end stopped from the plan in memory,
//! early end signals before a following booking, logs cut to size, unstarted jobs retried.

use super::*;

impl Jobs {
    /// Looks over the running jobs once: a slot whose end has passed in the plan held in memory
    /// is stopped even if the store could not record its end (a full disk); a job whose
    /// GPUs another booking takes at its end gets its end signal `grace` early; a log over the
    /// policy's `max_log` is cut. Also starts what a failed look at /proc left unstarted.
    pub(super) fn patrol(self: &Arc<Self>) {
        let waiting: Vec<(BookingId, (ChangeKind, JobRun))> = self
            .unrecorded
            .lock()
            .unwrap()
            .iter()
            .map(|(id, v)| (*id, v.clone()))
            .collect();
        for (id, (kind, run)) in waiting {
            self.write_run(id, kind, run);
        }
        let now = self.state.clock.now();
        let ids: Vec<BookingId> = self.watched.lock().unwrap().keys().copied().collect();
        let kept: HashSet<BookingId> = self.unrecorded.lock().unwrap().keys().copied().collect();
        let (due, max_log, unstarted) = {
            let inner = self.state.lock();
            let mut due = Vec::new();
            for id in &ids {
                let Some(b) = inner.plan.get(*id) else {
                    continue;
                };
                if b.interval.end <= now {
                    due.push((b.clone(), None));
                    continue;
                }
                let (_, _, grace) = end_signal(b, inner.plan.policy().max_grace_secs);
                let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero());
                // Someone whose booking starts on one of its GPUs within the grace after its
                // end: the kill must land at their start, so the signal goes out `grace`
                // before it.
                let after = gpubook_core::Interval {
                    start: b.interval.end,
                    end: b.interval.end + grace.max(chrono::Duration::seconds(1)),
                };
                if b.state == BookingState::Active && b.interval.end - grace <= now {
                    let next = inner
                        .plan
                        .conflicts(&b.gpus, &after, Some(b.id))
                        .into_iter()
                        .map(|c| (c.interval.start.max(b.interval.end), c.booking))
                        .min();
                    if let Some((start, id)) = next {
                        if start - grace <= now {
                            due.push((b.clone(), Some((id, start))));
                        }
                    }
                }
            }
            let unstarted: Vec<BookingId> = inner
                .plan
                .bookings()
                .filter(|b| b.state == BookingState::Active && b.job.is_some())
                .filter(|b| b.run.as_ref().is_none_or(|r| r.state == JobState::Starting))
                .map(|b| b.id)
                .filter(|id| !ids.contains(id))
                .filter(|id| !kept.contains(id))
                .collect();
            (due, inner.plan.policy().max_log_bytes, unstarted)
        };
        for (b, follower) in due {
            self.stop(b, follower);
        }
        for id in ids {
            cut_log(&self.log_path(id), max_log);
        }
        for id in unstarted {
            self.reconcile(id, true);
        }
    }
}
