//! How long to book: a length suggested from the owner's past runs of the same command.
//!
//! Runs are matched on the command *normalised* (values that change from run to run, such as
//! output directories, run names, seeds and time stamps, are blanked, so `train.py --out
//! runs/exp7` and `train.py --out runs/exp8` are one command) and on the GPU count. Of the
//! latest [`WINDOW`] matching runs, the suggestion is the [`QUANTILE`] of their lengths plus a
//! [`MARGIN`], rounded up to [`ROUND_TO`]. Where a run recorded the size of the data it staged
//! and the new booking stages data too, that run's length is scaled by the ratio of the sizes
//! first, since a training epoch takes time in proportion to its data. A run that was stopped
//! at its slot's end is only known to need *more* than it had, so it counts with its length
//! raised by the margin, and the suggestion is never below that. With fewer than [`FEW`] runs the longest one, plus a wider margin, is
//! the suggestion.

use chrono::{DateTime, Duration, Utc};
use thiserror::Error;

/// How many of the latest matching runs the suggestion is taken from.
pub const WINDOW: usize = 20;
/// The quantile of the past lengths suggested.
pub const QUANTILE: f64 = 0.9;
/// Added to the quantile, as a fraction of it.
pub const MARGIN: f64 = 0.05;
/// Below this many runs, the longest one plus [`FEW_MARGIN`] is suggested.
pub const FEW: usize = 4;
/// The margin over the longest run when there are fewer than [`FEW`].
pub const FEW_MARGIN: f64 = 0.15;
/// Suggestions are rounded up to this many minutes.
pub const ROUND_TO: i64 = 5;

/// One finished run of a job, as the agent recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastRun {
    /// The command line as booked.
    pub command: String,
    /// How many GPUs it had.
    pub gpus: u32,
    /// When it ended; the latest runs count.
    pub ended_at: DateTime<Utc>,
    /// How long it ran.
    pub ran: Duration,
    /// False when it was stopped at its slot's end (it would have needed longer).
    pub finished: bool,
    /// The bytes of data staged for it, where it staged any.
    pub staged_bytes: Option<u64>,
}

/// What a suggestion is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask<'a> {
    /// The command to be booked.
    pub command: &'a str,
    /// With how many GPUs.
    pub gpus: u32,
    /// The bytes of data it will stage, where known.
    pub staged_bytes: Option<u64>,
}

/// A suggested length and what it rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    /// The length to book.
    pub length: Duration,
    /// How many past runs it rests on.
    pub runs: usize,
    /// The shortest and longest of those runs, as they ran (before any scaling).
    pub shortest: Duration,
    /// See `shortest`.
    pub longest: Duration,
    /// Whether lengths were scaled by the size of the staged data.
    pub scaled: bool,
}

/// Why there is no suggestion.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoSuggestion {
    /// Nothing to match: the booking runs no command.
    #[error("a length can be suggested only for a booking that runs a command")]
    NoCommand,
    /// No past run of this command with this many GPUs.
    #[error("no past run of this command with {gpus} GPU(s) on this server to go by")]
    NoHistory {
        /// The GPU count asked for.
        gpus: u32,
    },
}

/// Suggests a length for `ask` from `history` (any order; runs of other commands are skipped).
pub fn suggest(history: &[PastRun], ask: &Ask) -> Result<Suggestion, NoSuggestion> {
    let key = normalise(ask.command);
    if key.is_empty() {
        return Err(NoSuggestion::NoCommand);
    }
    let mut runs: Vec<&PastRun> = history
        .iter()
        .filter(|r| r.gpus == ask.gpus && r.ran > Duration::zero() && normalise(&r.command) == key)
        .collect();
    if runs.is_empty() {
        return Err(NoSuggestion::NoHistory { gpus: ask.gpus });
    }
    runs.sort_by_key(|r| std::cmp::Reverse(r.ended_at));
    runs.truncate(WINDOW);
    let scaled = ask.staged_bytes.is_some_and(|b| b > 0)
        && runs.iter().all(|r| r.staged_bytes.is_some_and(|b| b > 0));
    let mut secs: Vec<f64> = runs
        .iter()
        .map(|r| {
            let mut s = r.ran.num_milliseconds() as f64 / 1000.0;
            if scaled {
                s *= ask.staged_bytes.unwrap_or(1) as f64 / r.staged_bytes.unwrap_or(1) as f64;
            }
            if !r.finished {
                s *= 1.0 + MARGIN;
            }
            s
        })
        .collect();
    // A run stopped at its end needed more than it had: never suggest less than that.
    let floor = runs
        .iter()
        .zip(&secs)
        .filter(|(r, _)| !r.finished)
        .map(|(_, s)| *s)
        .fold(0.0, f64::max);
    secs.sort_by(f64::total_cmp);
    let base = floor.max(if secs.len() < FEW {
        secs[secs.len() - 1] * (1.0 + FEW_MARGIN)
    } else {
        quantile(&secs, QUANTILE) * (1.0 + MARGIN)
    });
    let step = ROUND_TO as f64 * 60.0;
    let rounded = ((base / step).ceil().max(1.0) * step) as i64;
    Ok(Suggestion {
        length: Duration::seconds(rounded),
        runs: runs.len(),
        shortest: runs.iter().map(|r| r.ran).min().unwrap_or_default(),
        longest: runs.iter().map(|r| r.ran).max().unwrap_or_default(),
        scaled,
    })
}

/// The `q` quantile of sorted values, interpolated between neighbours.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Option names whose value names where a run writes or what it is called, not what it does.
const PER_RUN_OPTIONS: &[&str] = &[
    "out",
    "output",
    "outdir",
    "output-dir",
    "output_dir",
    "save",
    "save-dir",
    "save_dir",
    "project",
    "name",
    "run",
    "run-name",
    "run_name",
    "exp",
    "exp-name",
    "exp_name",
    "experiment",
    "tag",
    "seed",
    "log",
    "log-dir",
    "log_dir",
    "logdir",
    "ckpt",
    "checkpoint",
    "resume",
    "wandb-name",
    "id",
    "o",
];

/// The command with what changes from run to run blanked: the values of [`PER_RUN_OPTIONS`]
/// (`--out X`, `--out=X`, `name=X`), and words holding a date, a time stamp, a long number or a
/// UUID. Whitespace is collapsed.
pub fn normalise(command: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut blank_next = false;
    for word in command.split_whitespace() {
        if blank_next {
            blank_next = false;
            if !word.starts_with('-') {
                out.push("*");
                continue;
            }
        }
        let bare = word.trim_start_matches('-');
        if let Some((name, _)) = bare.split_once('=') {
            if per_run(name) {
                out.push(&word[..word.len() - bare.len() + name.len() + 1]);
                out.push("*");
                continue;
            }
        } else if word.starts_with('-') && per_run(bare) {
            out.push(word);
            blank_next = true;
            continue;
        }
        out.push(if changes_per_run(word) { "*" } else { word });
    }
    out.join(" ")
}

fn per_run(name: &str) -> bool {
    PER_RUN_OPTIONS.iter().any(|o| o.eq_ignore_ascii_case(name))
}

/// A word holding six or more digits in a row (dates, time stamps, job ids) or a UUID.
fn changes_per_run(word: &str) -> bool {
    let mut run = 0;
    for c in word.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 6 {
            return true;
        }
    }
    word.split(|c: char| !c.is_ascii_hexdigit() && c != '-')
        .any(|w| w.len() == 36 && w.matches('-').count() == 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(command: &str, gpus: u32, hours: i64, minutes: i64) -> PastRun {
        PastRun {
            command: command.into(),
            gpus,
            ended_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + Duration::hours(hours),
            ran: Duration::minutes(minutes),
            finished: true,
            staged_bytes: None,
        }
    }

    fn ask(command: &str, gpus: u32) -> Ask<'_> {
        Ask {
            command,
            gpus,
            staged_bytes: None,
        }
    }

    #[test]
    fn per_run_values_are_blanked() {
        let a = normalise("python train.py --data coco.yaml --out runs/exp7 --seed 3");
        let b = normalise("python  train.py --data coco.yaml --out=runs/exp8 --seed=4");
        assert_eq!(a, "python train.py --data coco.yaml --out * --seed *");
        assert_eq!(b, "python train.py --data coco.yaml --out= * --seed= *");
        assert_eq!(
            normalise("yolo train name=x1 epochs=100"),
            "yolo train name= * epochs=100"
        );
        assert_eq!(normalise("./run.sh 20261203-1412"), "./run.sh *");
        assert_eq!(
            normalise("t.py --id 1b4e28ba-2fa1-11d2-883f-0016d3cca427 --lr 3e-4"),
            "t.py --id * --lr 3e-4"
        );
        // What changes the work done stays.
        assert_ne!(normalise("t.py --epochs 10"), normalise("t.py --epochs 20"));
        // A flag after a per-run option without a value is kept.
        assert_eq!(normalise("t.py --resume --fast"), "t.py --resume --fast");
    }

    #[test]
    fn few_runs_give_the_longest_plus_a_wider_margin() {
        let h = [
            run("t.py --out a", 2, 1, 100),
            run("t.py --out b", 2, 2, 120),
        ];
        let s = suggest(&h, &ask("t.py --out c", 2)).unwrap();
        // 120 min * 1.15 = 138 min, rounded up to 140.
        assert_eq!((s.length, s.runs), (Duration::minutes(140), 2));
        assert_eq!(
            (s.shortest, s.longest),
            (Duration::minutes(100), Duration::minutes(120))
        );
    }

    #[test]
    fn many_runs_give_a_high_quantile_of_the_latest() {
        // 30 runs: the 10 oldest took 10 hours and fall outside the window.
        let mut h: Vec<PastRun> = (0..10).map(|i| run("t.py", 1, i, 600)).collect();
        h.extend((10..30).map(|i| run("t.py", 1, i, 100 + i)));
        let s = suggest(&h, &ask("t.py", 1)).unwrap();
        assert_eq!(s.runs, WINDOW);
        // Latest 20 are 110..=129 min; the 0.9 quantile is 127.1, +5 % = 133.5 -> 135.
        assert_eq!(s.length, Duration::minutes(135));
    }

    #[test]
    fn other_commands_and_gpu_counts_are_not_history() {
        let h = [run("t.py", 2, 1, 100), run("other.py", 1, 1, 100)];
        assert_eq!(
            suggest(&h, &ask("t.py", 1)),
            Err(NoSuggestion::NoHistory { gpus: 1 })
        );
        assert_eq!(suggest(&h, &ask("  ", 1)), Err(NoSuggestion::NoCommand));
    }

    #[test]
    fn a_bigger_dataset_scales_the_guess() {
        let h: Vec<PastRun> = (0..8)
            .map(|i| PastRun {
                staged_bytes: Some(100),
                ..run("t.py", 1, i, 60)
            })
            .collect();
        let mut a = ask("t.py", 1);
        a.staged_bytes = Some(200);
        let s = suggest(&h, &a).unwrap();
        assert!(s.scaled);
        assert_eq!(s.length, Duration::minutes(130)); // 120 * 1.05 = 126 -> 130
    }

    #[test]
    fn a_run_stopped_at_its_end_counts_as_needing_more() {
        let mut h: Vec<PastRun> = (0..5).map(|i| run("t.py", 1, i, 100)).collect();
        h[4].finished = false;
        h[4].ran = Duration::minutes(200);
        let s = suggest(&h, &ask("t.py", 1)).unwrap();
        assert!(s.length > Duration::minutes(200), "{:?}", s.length);
    }
}
