//! Starting a booking's job at its slot's start, and adopting one that already runs after a
//! restart (or marking it lost).

use super::*;

impl Jobs {
    pub(super) fn start(self: &Arc<Self>, b: Booking, recovering: bool) {
        let id = b.id;
        let marks = self.marks(id);
        // Started before a crash but not recorded? Then it runs: adopt it, never start twice.
        let mut found: Vec<(u64, u32)> = if recovering {
            let Ok(pids) = marks.pids(self.owner_uid(&b)) else {
                // Whether it runs cannot be told now: never start it twice; look again later.
                eprintln!(
                    "gpubook-agent: cannot look for booking {id}'s job in /proc; trying again"
                );
                return;
            };
            pids.into_iter()
                .filter_map(|pid| procs::start_ticks(pid).map(|t| (t, pid)))
                .collect()
        } else {
            Vec::new()
        };
        found.sort();
        if let Some((ticks, pid)) = found.first().copied() {
            let log = self.log_path(id).display().to_string();
            self.record(id, ChangeKind::JobStarted, |r| {
                r.state = JobState::Running;
                r.pid = Some(pid);
                r.start_ticks = Some(ticks);
                r.log = Some(log);
                r.message = Some("found running after an agent restart; adopted".into());
            });
            self.watch_adopted(id, pid, ticks);
            return;
        }
        // Looked up first: the stage lock is never held while the state's is taken.
        let stage = self.stages.lock().unwrap().get(&id).cloned();
        let staged_bytes = match &stage {
            Some(crate::transfer::StageState::Ready { bytes }) => Some(*bytes),
            _ => None,
        };
        let stages_data = b.job.as_ref().is_some_and(|j| !j.stage.is_empty());
        match stage {
            // Started when its data is in place: `stage_ready` brings it back here. One the
            // stage runner has not taken up yet (a slot that starts as it is booked, or after
            // a restart) waits for it too: the patrol brings it back.
            Some(crate::transfer::StageState::Copying) => return,
            None if stages_data => return,
            Some(crate::transfer::StageState::Failed(why)) => {
                let now = self.state.clock.now();
                self.record(id, ChangeKind::JobFailed, |r| {
                    r.state = JobState::FailedToStart;
                    r.ended_at = Some(now);
                    r.message = Some(format!("its data could not be staged: {why}"));
                });
                return self.give_back(&b);
            }
            _ => {}
        }
        match self.spawn(&b, &marks) {
            Ok((child, pid)) => {
                let ticks = procs::start_ticks(pid);
                let (tx, rx) = watch::channel(None);
                self.watched.lock().unwrap().insert(
                    id,
                    Watched {
                        pid,
                        ticks,
                        done: rx,
                    },
                );
                let log = self.log_path(id).display().to_string();
                let now = self.state.clock.now();
                self.record(id, ChangeKind::JobStarted, |r| {
                    r.state = JobState::Running;
                    r.pid = Some(pid);
                    r.start_ticks = ticks;
                    r.started_at = Some(now);
                    r.log = Some(log);
                    r.message = None;
                    r.staged_bytes = staged_bytes;
                });
                let me = self.clone();
                tokio::spawn(async move {
                    let mut child = child;
                    let began = std::time::Instant::now();
                    let exit = child.wait().await.ok().map(|s| Exit {
                        code: s.code(),
                        signal: s.signal(),
                    });
                    let _ = tx.send(Some(exit));
                    me.ended(id, exit, began.elapsed());
                });
            }
            Err(why) => {
                let now = self.state.clock.now();
                self.record(id, ChangeKind::JobFailed, |r| {
                    r.state = JobState::FailedToStart;
                    r.ended_at = Some(now);
                    r.message = Some(why);
                });
                self.give_back(&b);
            }
        }
    }

    pub(super) fn adopt(self: &Arc<Self>, b: Booking) {
        let Some(run) = &b.run else { return };
        let (Some(pid), Some(ticks)) = (run.pid, run.start_ticks) else {
            return self.lost(
                b.id,
                "the agent restarted and the job's process is not known",
            );
        };
        if procs::is_alive(pid, ticks) {
            self.watch_adopted(b.id, pid, ticks);
        } else if self
            .marks(b.id)
            .pids(self.owner_uid(&b))
            .map_or(true, |found| !found.is_empty())
        {
            // The main process ended while no agent watched, but something it started still
            // runs: the job is over (status unknown), and what it left behind is swept away.
            self.ended(b.id, None, Duration::ZERO);
        } else {
            self.lost(
                b.id,
                "the job ended while the agent was not running; its exit status is unknown",
            );
        }
    }

    pub(super) fn lost(&self, id: BookingId, why: &str) {
        let now = self.state.clock.now();
        let why = why.to_string();
        self.record(id, ChangeKind::JobLost, |r| {
            r.state = JobState::Lost;
            r.ended_at = Some(now);
            r.message = Some(why);
        });
    }

    /// Watches a job that is not this process's child, through /proc.
    pub(super) fn watch_adopted(self: &Arc<Self>, id: BookingId, pid: u32, ticks: u64) {
        let (tx, rx) = watch::channel(None);
        self.watched.lock().unwrap().insert(
            id,
            Watched {
                pid,
                ticks: Some(ticks),
                done: rx,
            },
        );
        let me = self.clone();
        tokio::spawn(async move {
            let began = std::time::Instant::now();
            while procs::is_alive(pid, ticks) {
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            let _ = tx.send(Some(None));
            me.ended(id, None, began.elapsed());
        });
    }
}
