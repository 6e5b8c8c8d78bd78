//! How long to book: the caller's own past runs on this server, read from the plan, handed to
//! `gpubook_core::predict`. Only the caller's bookings are read, so a suggestion tells nothing
//! about anyone else's work.

use gpubook_core::predict::{self, Ask, NoSuggestion, PastRun};
use gpubook_core::{duration::format_duration, Booking, JobState};
use gpubook_proto::{SuggestRequest, SuggestionResponse};

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
                staged_bytes: None,
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
