//! The copy child: `gpubook-agent transfer JSON`, started by the agent as the booking's owner
//! (see `jobs::as_owner`). It reads its task from the argument, writes one JSON line per
//! progress report on stdout and a last line with the result; an error goes to stderr as one
//! line and the exit status is 1.

use gpubook_core::{S3Access, SavedFile};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;

/// Stage sources for one booking.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageTask {
    /// `<scratch>/<owner>`: the owner's own directory, made by the agent.
    pub owner_dir: PathBuf,
    /// `<owner_dir>/booking-<id>`: `$GPUBOOK_STAGE`.
    pub booking_dir: PathBuf,
    /// Stage name → source path.
    pub entries: Vec<(String, String)>,
    /// Bytes the owner's cache may hold.
    pub quota: u64,
    /// Cache keys of data staged for the owner's bookings still to come: never evicted.
    pub pinned: Vec<String>,
    /// Which of the owner's S3 credentials to use.
    #[serde(default)]
    pub s3: S3Access,
}

/// Save one job's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SaveTask {
    /// The job's working directory.
    pub cwd: String,
    /// Globs relative to it.
    pub globs: Vec<String>,
    /// The destination, filled in.
    pub to: String,
    /// Which of the owner's S3 credentials to use.
    #[serde(default)]
    pub s3: S3Access,
}

/// Measure sources: the bytes a stage of them would copy (for a length suggestion).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeasureTask {
    /// Source paths or `s3://` URLs.
    pub sources: Vec<String>,
    /// Which of the owner's S3 credentials to use.
    #[serde(default)]
    pub s3: S3Access,
}

/// Remove the link directories (`booking-N`) of an owner's bookings that are over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TidyTask {
    /// `<scratch>/<owner>`.
    pub owner_dir: PathBuf,
    /// The bookings whose directories stay (not over yet).
    pub keep: Vec<u64>,
}

/// What the child is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Stage-in.
    Stage(StageTask),
    /// Save.
    Save(SaveTask),
    /// Measure.
    Measure(MeasureTask),
    /// Tidy.
    Tidy(TidyTask),
}

/// How far a stage has come.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The entry being copied.
    pub name: String,
    /// Bytes copied or found there.
    pub done_bytes: u64,
    /// Bytes in all.
    pub total_bytes: u64,
    /// Files copied.
    pub copied_files: u64,
    /// Files found already there.
    pub kept_files: u64,
}

/// One line the child writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    /// Progress so far.
    Progress(Progress),
    /// Staged: the final figures.
    Staged(Progress),
    /// Saved: the files.
    Saved(Vec<SavedFile>),
    /// Measured: the bytes of all the sources.
    Measured(u64),
    /// Tidied: the directories removed.
    Tidied(Vec<String>),
}

/// The child's main: runs the task in `arg`, returns the exit status.
pub fn main(arg: &str) -> i32 {
    let task: Task = match serde_json::from_str(arg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("the copy task does not read: {e}");
            return 2;
        }
    };
    let out = std::io::stdout();
    let emit = |line: &Line| {
        let mut out = out.lock();
        let _ = serde_json::to_writer(&mut out, line);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    };
    let result = match task {
        Task::Stage(t) => super::copy::stage(&t, &mut |p| emit(&Line::Progress(p.clone())))
            .map(|p| emit(&Line::Staged(p))),
        Task::Save(t) => super::save::save(&t).map(|files| emit(&Line::Saved(files))),
        Task::Measure(t) => t
            .sources
            .iter()
            .map(|s| super::copy::source_size(s, &t.s3))
            .sum::<Result<u64, String>>()
            .map(|bytes| emit(&Line::Measured(bytes))),
        Task::Tidy(t) => super::copy::tidy(&t).map(|gone| emit(&Line::Tidied(gone))),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}", e.replace('\n', " "));
            1
        }
    }
}
