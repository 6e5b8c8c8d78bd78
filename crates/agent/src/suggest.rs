//! How long to book: the caller's own past runs on this server, read from the plan, handed to
//! `gpubook_core::predict`. Only the caller's bookings are read, so a suggestion tells nothing
//! about anyone else's work. Each run carries the size of the data staged for it; where the
//! request names data to stage, its size now is counted by the copy child as the caller
//! (never read by the agent), so a grown dataset scales the suggestion.

use gpubook_core::predict::{self, Ask, NoSuggestion, PastRun};
use gpubook_core::{duration::format_duration, Booking, JobState};
use gpubook_proto::{ErrorBody, ErrorKind, SuggestRequest, SuggestionResponse};
use std::collections::HashMap;
use std::sync::Mutex;

/// Counts of data sizes being counted for a suggestion at once per person; more are refused.
pub const MEASURES_PER_USER: usize = 2;

/// The counts running, per person: bounded, so one person cannot fill the server with them.
/// A plain mutex: never held across an await.
#[derive(Debug, Default)]
pub struct Measuring(Mutex<HashMap<String, usize>>);

/// One count's place in [`Measuring`], given back on drop.
struct Slot<'a>(&'a Measuring, String);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut m = self.0 .0.lock().unwrap();
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

impl Measuring {
    fn take(&self, user: &str) -> Option<Slot<'_>> {
        let mut m = self.0.lock().unwrap();
        let n = m.entry(user.to_string()).or_default();
        if *n >= MEASURES_PER_USER {
            return None;
        }
        *n += 1;
        Some(Slot(self, user.to_string()))
    }
}

/// Fills in `req.staged_bytes` from the sources it names, counted as `user`: unchanged where
/// it gives the size or names no source, or where counting takes longer than
/// `transfer::MEASURE_FOR` (then the suggestion is not scaled). A source that cannot be read
/// as `user` is an `Invalid` error saying why.
pub async fn measure(
    measuring: &Measuring,
    user: &str,
    req: &mut SuggestRequest,
) -> Result<(), ErrorBody> {
    if req.staged_bytes.is_some() || req.stage.is_empty() {
        return Ok(());
    }
    gpubook_core::transfer::check_transfers(&req.stage, &[], None, &req.s3)
        .map_err(|e| ErrorBody::new(ErrorKind::Invalid, e.to_string()))?;
    let Some(_slot) = measuring.take(user) else {
        return Err(ErrorBody::new(
            ErrorKind::Unavailable,
            format!(
                "{user} already has {MEASURES_PER_USER} data sizes being counted for a                  suggestion; try again when they are done"
            ),
        ));
    };
    let sources = req.stage.values().cloned().collect();
    match crate::transfer::measure(user, sources, req.s3.clone()).await {
        Ok(bytes) => {
            req.staged_bytes = bytes;
            Ok(())
        }
        Err(why) => Err(ErrorBody::new(
            ErrorKind::Invalid,
            format!("the size of the data to stage could not be counted as {user}: {why}"),
        )),
    }
}

/// The caller's finished runs: exited with status 0 (ran to its end) or stopped at the slot's
/// end (needed longer). Failed, lost and killed-for-cause runs say nothing about the length.
pub fn past_runs<'a>(bookings: impl Iterator<Item = &'a Booking>, owner: &str) -> Vec<PastRun> {
    bookings
        .filter(|b| b.owner == owner)
        .filter_map(|b| {
            let job = b.job.as_ref()?;
            let run = b.run.as_ref()?;
            let finished = match run.state {
                JobState::Finished if run.exit_code == Some(0) => true,
                JobState::Stopped => false,
                _ => return None,
            };
            let (start, end) = (run.started_at?, run.ended_at?);
            Some(PastRun {
                command: job.command.clone(),
                gpus: b.gpus.len() as u32,
                ended_at: end,
                ran: end - start,
                finished,
                staged_bytes: run.staged_bytes,
            })
        })
        .collect()
}

/// The answer to `req` from `history`.
pub fn answer(history: &[PastRun], req: &SuggestRequest) -> SuggestionResponse {
    let ask = Ask {
        command: &req.command,
        gpus: req.gpus,
        staged_bytes: req.staged_bytes,
    };
    match predict::suggest(history, &ask) {
        Ok(s) => SuggestionResponse {
            length_secs: Some(s.length.num_seconds()),
            runs: s.runs as u32,
            shortest_secs: s.shortest.num_seconds(),
            longest_secs: s.longest.num_seconds(),
            scaled: s.scaled,
            says: format!(
                "your last {} run{} of this took {} – {}{}; book {}",
                s.runs,
                if s.runs == 1 { "" } else { "s" },
                format_duration(s.shortest),
                format_duration(s.longest),
                if s.scaled {
                    " (scaled to the data's size)"
                } else {
                    ""
                },
                format_duration(s.length)
            ),
        },
        Err(e) => SuggestionResponse {
            length_secs: None,
            runs: 0,
            shortest_secs: 0,
            longest_secs: 0,
            scaled: false,
            says: match e {
                NoSuggestion::NoHistory { .. } => format!("{e}: give a length"),
                NoSuggestion::NoCommand => e.to_string(),
            },
        },
    }
}
