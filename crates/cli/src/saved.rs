//! After `run`'s job: what became of the files it saves (`--save`), from the agent's
//! `job_saved` or `save_failed` event, told in `--json` as one line that CI scripts read.

use crate::jobs::never_ran;
use gpubook_core::Booking;
use std::time::Duration;

/// How long `run` waits, after its job, for the agent to say its results were saved (tries
/// and back-off included).
pub const SAVE_WAIT: Duration = Duration::from_secs(30 * 60);

/// How a job ended, as [`wait`] saw it.
#[derive(Debug)]
pub struct Ended {
    /// The booking at the end.
    pub booking: Booking,
    /// The `job_saved` (`Note::Saved`) or `save_failed` (`Note::TransferFailed`) note, when
    /// asked to wait for it and the job saves files.
    pub saved: Option<gpubook_core::Note>,
}

/// Says what became of a job's saved files: with `json`, one line `{"id", "job_saved":
/// {"kind": "saved", "to", "files": [{"name", "size", "sha256"}]}}` (or `"save_failed":
/// {"kind": "transfer_failed", "reason", "attempts"}`) before the booking; else a line on
/// stderr. A save that failed or was not heard of is a failure (exit 5).
pub fn report_saved(e: &Ended, json: bool) -> Result<(), crate::Failure> {
    let id = e.booking.id;
    let Some(job) = e.booking.job.as_ref().filter(|j| !j.save.is_empty()) else {
        return Ok(());
    };
    let unavailable = |msg: String| crate::Failure {
        code: crate::exit_code(gpubook_proto::ErrorKind::Unavailable),
        error: anyhow::anyhow!(msg),
        kind: Some(gpubook_proto::ErrorKind::Unavailable),
    };
    match &e.saved {
        Some(note @ gpubook_core::Note::Saved { to, files }) => {
            if json {
                println!("{}", serde_json::json!({ "id": id, "job_saved": note }));
            } else {
                let bytes: u64 = files.iter().map(|f| f.size).sum();
                eprintln!(
                    "gpubook: booking {id}'s results: {} file{} ({}) saved to {to}, checksums \
                     verified",
                    files.len(),
                    if files.len() == 1 { "" } else { "s" },
                    gpubook_core::size::format_size(bytes)
                );
            }
            Ok(())
        }
        Some(note @ gpubook_core::Note::TransferFailed { reason, attempts }) => {
            if json {
                println!("{}", serde_json::json!({ "id": id, "save_failed": note }));
            }
            Err(unavailable(format!(
                "booking {id}'s results could not be saved after {attempts} tries: {reason}; \
                 the files stay in the job's working directory on the server"
            )))
        }
        _ if never_ran(&e.booking) => Ok(()),
        _ => Err(unavailable(format!(
            "booking {id}'s job ended but the agent did not say within {} min whether its \
             results reached {}",
            SAVE_WAIT.as_secs() / 60,
            job.save_to.as_deref().unwrap_or("their destination")
        ))),
    }
}
