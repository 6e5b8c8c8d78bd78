//! Slurm underneath gpubook (`--gpus slurm`): the calendar, approvals and notifications stay
//! gpubook's, while Slurm holds the GPUs and runs the jobs.
//!
//! - [`reader`]: the cluster's GPUs, one per `gres/gpu` of every node (`sinfo --json`), and
//!   which of them Slurm has allocated now.
//! - [`nodes`]: live readings of the nodes' GPUs, from gpubook agents on the nodes.
//! - [`hold`]: every confirmed booking is held by a Slurm reservation named `gpubook-<id>`,
//!   made, changed and deleted in the same decision as the booking (see [`crate::state::Holder`]),
//!   and brought back in line after a crash of either side.
//!
//! Slurm is read through its JSON output (`sinfo --json`, `squeue --json`), never by scraping
//! its tables; a Slurm without it (before 21.08) is refused with the version it needs.
//! Reservations are read with `scontrol show reservation --oneliner` (key=value pairs, one
//! reservation a line): `scontrol --json` arrived in 23.02, after Debian 12's 22.05.
//!
//! The commands run with `TZ=UTC`, so the times gpubook writes and reads are UTC whatever the
//! host's zone; `SLURM_CONF` passes through from the agent's environment.

pub mod hold;
pub mod json;
pub mod nodes;
pub mod outside;
pub mod reader;
pub mod runner;

use std::process::Command;
use thiserror::Error;

/// The oldest Slurm whose `sinfo` and `squeue` answer in JSON.
pub const MIN_VERSION: (u32, u32) = (21, 8);

/// The first Slurm whose reservations can hold GPUs by count (`TRES=gres/gpu=N`); older ones
/// are held by the whole node (see [`hold`]).
pub const GRES_RESERVATION_VERSION: (u32, u32) = (23, 2);

/// Talking to Slurm failed.
#[derive(Debug, Error)]
pub enum SlurmError {
    /// A Slurm command is not installed (or not on PATH).
    #[error("{program} was not found: is this a Slurm controller or login node? ({why})")]
    Missing {
        /// The command.
        program: String,
        /// What the system said.
        why: String,
    },
    /// Slurm answered with an error; its own words.
    #[error("Slurm refused ({command}): {words}")]
    Refused {
        /// The command, as run.
        command: String,
        /// What Slurm wrote.
        words: String,
    },
    /// This Slurm is too old for what gpubook needs.
    #[error(
        "Slurm {found} is too old: gpubook needs Slurm {}.{:02} or newer (for `sinfo --json` \
         and `squeue --json`)",
        MIN_VERSION.0,
        MIN_VERSION.1
    )]
    TooOld {
        /// The version found.
        found: String,
    },
    /// Slurm's output was not what its documented format says.
    #[error("unexpected output from {command}: {why}")]
    Output {
        /// The command.
        command: String,
        /// What was wrong.
        why: String,
    },
}

/// How often the reservations are brought in line with the plan, besides every decision: what
/// a crash of either side or a reservation deleted by hand left behind is repaired within this.
pub const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Keeps Slurm's reservations in line with the plan until `shutdown` (nothing to do when the
/// agent does not run on Slurm).
pub async fn keep_holds(
    state: std::sync::Arc<crate::state::State>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    if !state.has_holder() {
        return;
    }
    tokio::pin!(shutdown);
    let mut every = tokio::time::interval(RECONCILE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => {
                let st = state.clone();
                let _ = tokio::task::spawn_blocking(move || st.reconcile_holds()).await;
            }
            _ = &mut shutdown => return,
        }
    }
}

/// How long a Slurm command may take to fail before the controller counts as not answering.
const NOT_ANSWERING_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// For how long after the controller did not answer commands fail at once, with its words,
/// instead of each waiting for Slurm's own timeout under the plan's lock.
pub const DOWN_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// When the controller last did not answer, and what Slurm said then.
static DOWN: std::sync::Mutex<Option<(std::time::Instant, String)>> = std::sync::Mutex::new(None);

/// Runs `program args…` with `TZ=UTC` and returns its standard output; Slurm's own words when
/// it fails. While the controller is not answering (a command failed after waiting
/// [`NOT_ANSWERING_AFTER`], within [`DOWN_FOR`]) it fails at once with those words.
pub fn run(program: &str, args: &[&str]) -> Result<String, SlurmError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let down = DOWN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some((at, words)) = down.filter(|(at, _)| at.elapsed() < DOWN_FOR) {
        return Err(SlurmError::Refused {
            command,
            words: format!(
                "{words} (Slurm's controller did not answer {} s ago; asked again after {} s)",
                at.elapsed().as_secs(),
                DOWN_FOR.as_secs()
            ),
        });
    }
    let started = std::time::Instant::now();
    let out = Command::new(program)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .map_err(|e| SlurmError::Missing {
            program: program.to_string(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        let words = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let words = if words.is_empty() {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        } else {
            words
        };
        if started.elapsed() >= NOT_ANSWERING_AFTER {
            *DOWN.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((std::time::Instant::now(), words.clone()));
        }
        return Err(SlurmError::Refused { command, words });
    }
    String::from_utf8(out.stdout).map_err(|e| SlurmError::Output {
        command,
        why: e.to_string(),
    })
}

/// The Slurm version (major, minor) from `sinfo --version` ("slurm 23.02.1", "slurm-wlm
/// 22.05.8").
pub fn version() -> Result<(u32, u32), SlurmError> {
    let out = run("sinfo", &["--version"])?;
    parse_version(&out).ok_or_else(|| SlurmError::Output {
        command: "sinfo --version".into(),
        why: format!("no version in {:?}", out.trim()),
    })
}

/// (major, minor) from the last word of `text`, e.g. "slurm-wlm 22.05.8" → (22, 5).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let word = text.split_whitespace().last()?;
    let mut parts = word.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// On a Slurm cluster (`--gpus slurm`), makes `state`'s bookings held by Slurm reservations,
/// once Slurm's version is checked; elsewhere nothing.
pub fn hold_in_slurm(
    state: &mut crate::state::State,
    source: &crate::gpu::Source,
) -> Result<(), SlurmError> {
    if *source != crate::gpu::Source::Slurm {
        return Ok(());
    }
    let version = check_version()?;
    state.set_holder(std::sync::Arc::new(hold::SlurmHolder::new(version)));
    Ok(())
}

/// Checks that this Slurm answers in JSON; its version otherwise.
pub fn check_version() -> Result<(u32, u32), SlurmError> {
    let v = version()?;
    if v < MIN_VERSION {
        return Err(SlurmError::TooOld {
            found: format!("{}.{:02}", v.0, v.1),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_slurm_prints_them() {
        assert_eq!(parse_version("slurm-wlm 22.05.8\n"), Some((22, 5)));
        assert_eq!(parse_version("slurm 23.02.1"), Some((23, 2)));
        assert!(parse_version("slurm 20.11.9") < Some(MIN_VERSION));
        assert_eq!(parse_version("garbage"), None);
    }
}
