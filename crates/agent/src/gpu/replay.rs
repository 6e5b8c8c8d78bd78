//! Replay of recorded NVML readings, for demos and tests on machines without GPUs.
//!
//! Two kinds of file are accepted:
//!
//! - a single reading (`nvml-idle.json`): one JSON object `{"sample": {"gpus": [...]}, ...}`,
//!   possibly pretty-printed; every read returns that sample;
//! - a trace (`nvml-trace.jsonl`): one JSON object `{"t": SECONDS, "sample": {...}}` per line.
//!   It is played in real time from the moment the reader was opened: the time elapsed since then
//!   is mapped onto `t - t_first`, and the trace loops when it runs past its end (the loop is
//!   `t_last - t_first + 1 s` long, one reading a second being the usual rate). A speed
//!   ([`ReplayReader::with_speed`], `--replay-speed`) plays it that many times faster; the
//!   readings' `at` stays the wall-clock time at which they were read.
//!
//! The inventory (the GPUs) comes from the first reading; every later reading may only name
//! GPUs that the first one has.

use super::{GpuError, GpuReader};
use chrono::{DateTime, Utc};
use gpubook_core::{Gpu, GpuUuid};
use gpubook_proto::{GpuProcess, GpuReading, Readings};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Plays back recorded readings.
#[derive(Debug)]
pub struct ReplayReader {
    /// The file, for messages.
    path: PathBuf,
    /// The GPUs of the first reading.
    gpus: Vec<Gpu>,
    /// The readings, each with its offset from the first; never empty, offsets ascending.
    frames: Vec<Frame>,
    /// How long one pass of the trace lasts before it starts again; `None` for a single reading.
    period: Option<Duration>,
    /// When the reader was opened (monotonic), the origin of the replay.
    opened: Instant,
    /// The same moment on the wall clock, for the readings' `at`.
    opened_at: DateTime<Utc>,
    /// How many times faster than recorded the trace plays.
    speed: f64,
}

/// One recorded reading.
#[derive(Debug, Clone)]
struct Frame {
    /// Time since the first reading of the trace.
    offset: Duration,
    /// The GPUs as read then.
    gpus: Vec<GpuReading>,
}

/// A single-reading file: `{init_us, per_sample_us, sample}`; only `sample` is used.
#[derive(Debug, Deserialize)]
struct SingleFile {
    sample: Sample,
}

/// One line of a trace: `{t, sample_us, sample}`; `sample_us` is not used.
#[derive(Debug, Deserialize)]
struct TraceLine {
    /// Unix seconds.
    t: f64,
    sample: Sample,
}

/// What NVML said at one moment.
#[derive(Debug, Deserialize)]
struct Sample {
    gpus: Vec<RecordedGpu>,
}

/// One GPU of a sample, with the field names of the recordings.
#[derive(Debug, Deserialize)]
struct RecordedGpu {
    uuid: String,
    index: u32,
    name: String,
    memory_total: u64,
    #[serde(default)]
    memory_used: u64,
    #[serde(default)]
    util_gpu: u32,
    #[serde(default)]
    util_mem: u32,
    #[serde(default)]
    temperature_c: u32,
    #[serde(default)]
    power_mw: u32,
    #[serde(default)]
    power_limit_mw: u32,
    #[serde(default)]
    processes: Vec<RecordedProcess>,
}

/// One compute process of a recorded GPU; `user` is in traces only.
#[derive(Debug, Deserialize)]
struct RecordedProcess {
    pid: u32,
    used_bytes: u64,
    #[serde(default)]
    user: Option<String>,
}

impl From<RecordedGpu> for GpuReading {
    fn from(g: RecordedGpu) -> Self {
        GpuReading {
            uuid: GpuUuid(g.uuid),
            index: g.index,
            name: g.name,
            memory_used: g.memory_used,
            memory_total: g.memory_total,
            util_gpu: g.util_gpu,
            util_mem: g.util_mem,
            temperature_c: g.temperature_c,
            power_mw: g.power_mw,
            power_limit_mw: g.power_limit_mw,
            processes: g
                .processes
                .into_iter()
                .map(|p| GpuProcess {
                    pid: p.pid,
                    user: p.user,
                    used_bytes: p.used_bytes,
                })
                .collect(),
            fault: None,
            allocated: None,
        }
    }
}

impl ReplayReader {
    /// Opens the recording at `path` (a single reading or a `.jsonl` trace) for the server
    /// called `server`; the replay's clock starts now.
    pub fn open(path: &Path, server: &str) -> Result<Self, GpuError> {
        let bad = |why: String| GpuError::Replay {
            path: path.to_path_buf(),
            why,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let (frames, period) = parse(path, &text).map_err(bad)?;
        let gpus = frames[0]
            .gpus
            .iter()
            .map(|g| Gpu {
                uuid: g.uuid.clone(),
                index: g.index,
                name: g.name.clone(),
                memory_total: g.memory_total,
                server: server.to_string(),
                simulated: false,
                node: None,
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            gpus,
            frames,
            period,
            opened: Instant::now(),
            opened_at: Utc::now(),
            speed: 1.0,
        })
    }

    /// The same replay played `speed` times faster than recorded (tests: a 150 s trace in
    /// 15 s). A speed that is not a positive number plays as recorded.
    pub fn with_speed(mut self, speed: f64) -> Self {
        self.speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        self
    }

    /// The reading [`GpuReader::read`] gives `real` after the reader was opened: the trace
    /// at `real × speed`, stamped with the wall-clock time `opened + real`.
    pub fn read_after(&self, real: Duration) -> Readings {
        let mut r = self.read_at(real.mul_f64(self.speed));
        r.at = self.opened_at
            + chrono::Duration::from_std(real).unwrap_or_else(|_| chrono::Duration::zero());
        r
    }

    /// The file being played.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is a trace (played in time) rather than a single reading.
    pub fn is_trace(&self) -> bool {
        self.period.is_some()
    }

    /// How long one pass of the trace lasts (last t − first t + 1 s); `None` for a single
    /// reading.
    pub fn period(&self) -> Option<Duration> {
        self.period
    }

    /// The reading the replay gives `elapsed` after it was opened: what [`GpuReader::read`]
    /// returns, with the time made explicit so tests are deterministic.
    pub fn read_at(&self, elapsed: Duration) -> Readings {
        let frame = match self.period {
            None => &self.frames[0],
            Some(period) => {
                let offset =
                    Duration::from_nanos((elapsed.as_nanos() % period.as_nanos().max(1)) as u64);
                // The last frame at or before `offset`; the first frame's offset is zero.
                let i = self.frames.partition_point(|f| f.offset <= offset);
                &self.frames[i.saturating_sub(1)]
            }
        };
        let at = self.opened_at
            + chrono::Duration::from_std(elapsed).unwrap_or_else(|_| chrono::Duration::zero());
        Readings {
            at,
            gpus: frame.gpus.clone(),
        }
    }
}

/// Whether `path` names a trace by its extension.
fn is_trace_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "ndjson")
    )
}

/// Parses a recording: its frames (never empty, offsets ascending) and, for a trace, its
/// loop length. The error is a sentence for [`GpuError::Replay`].
fn parse(path: &Path, text: &str) -> Result<(Vec<Frame>, Option<Duration>), String> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return Err("the file is empty".into());
    }
    // A trace by name, or one complete JSON object per line whatever the name.
    let looks_like_trace = is_trace_name(path)
        || (lines.len() > 1
            && serde_json::from_str::<serde_json::Value>(lines[0].1)
                .is_ok_and(|v| v.get("t").is_some()));
    if looks_like_trace {
        parse_trace(&lines)
    } else {
        let single: SingleFile = serde_json::from_str(text).map_err(|e| {
            format!("not a reading (expected {{\"sample\": {{\"gpus\": [...]}}}}): {e}")
        })?;
        let frame = Frame {
            offset: Duration::ZERO,
            gpus: single.sample.gpus.into_iter().map(Into::into).collect(),
        };
        check_gpus(&frame, None).map_err(|why| format!("the reading {why}"))?;
        Ok((vec![frame], None))
    }
}

/// Parses the non-blank `lines` (with their 1-based numbers) of a trace.
fn parse_trace(lines: &[(usize, &str)]) -> Result<(Vec<Frame>, Option<Duration>), String> {
    let mut frames: Vec<Frame> = Vec::with_capacity(lines.len());
    let mut t_first = 0.0;
    let mut t_last = 0.0;
    for (n, line) in lines {
        let rec: TraceLine = serde_json::from_str(line).map_err(|e| {
            format!(
                "line {n} is not a reading (expected {{\"t\": SECONDS, \"sample\": \
                 {{\"gpus\": [...]}}}}): {e}"
            )
        })?;
        if !rec.t.is_finite() {
            return Err(format!("line {n}: t is not a number of seconds"));
        }
        if frames.is_empty() {
            t_first = rec.t;
        } else if rec.t < t_last {
            return Err(format!(
                "line {n}: t = {} goes back in time (the line before has {t_last})",
                rec.t
            ));
        }
        t_last = rec.t;
        let frame = Frame {
            offset: Duration::from_secs_f64(rec.t - t_first),
            gpus: rec.sample.gpus.into_iter().map(Into::into).collect(),
        };
        check_gpus(&frame, frames.first()).map_err(|why| format!("line {n}: the reading {why}"))?;
        frames.push(frame);
    }
    let period = Duration::from_secs_f64(t_last - t_first) + Duration::from_secs(1);
    Ok((frames, Some(period)))
}

/// Checks that `frame` has GPUs and, given the `first` frame, only the GPUs of the first.
fn check_gpus(frame: &Frame, first: Option<&Frame>) -> Result<(), String> {
    let Some(first) = first else {
        return if frame.gpus.is_empty() {
            Err("lists no GPUs".into())
        } else {
            Ok(())
        };
    };
    for g in &frame.gpus {
        if !first.gpus.iter().any(|f| f.uuid == g.uuid) {
            return Err(format!(
                "names GPU {} that the first reading does not have",
                g.uuid.0
            ));
        }
    }
    Ok(())
}

impl GpuReader for ReplayReader {
    fn inventory(&self) -> Vec<Gpu> {
        self.gpus.clone()
    }

    fn read(&mut self) -> Result<Readings, GpuError> {
        Ok(self.read_after(self.opened.elapsed()))
    }

    fn source(&self) -> &'static str {
        "replay"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu_json(uuid: &str, util: u32) -> String {
        format!(
            r#"{{"index":0,"name":"G","uuid":"{uuid}","memory_total":100,"memory_used":10,"util_gpu":{util}}}"#
        )
    }

    fn line(t: f64, uuid: &str, util: u32) -> String {
        format!(
            r#"{{"t":{t},"sample":{{"gpus":[{}]}}}}"#,
            gpu_json(uuid, util)
        )
    }

    fn frames(text: &str, name: &str) -> Result<(Vec<Frame>, Option<Duration>), String> {
        parse(Path::new(name), text)
    }

    #[test]
    fn a_trace_is_found_by_content_whatever_its_name() {
        let text = [line(10.0, "A", 1), line(11.0, "A", 2), line(12.5, "A", 3)].join("\n");
        let (f, period) = frames(&text, "x.json").unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[2].offset, Duration::from_millis(2500));
        assert_eq!(period, Some(Duration::from_millis(3500)));
    }

    #[test]
    fn a_one_line_jsonl_file_is_a_trace() {
        let (f, period) = frames(&line(5.0, "A", 7), "x.jsonl").unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(period, Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_one_line_single_reading_is_static() {
        let text = format!(r#"{{"sample":{{"gpus":[{}]}}}}"#, gpu_json("A", 3));
        let (f, period) = frames(&text, "x.json").unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(period, None);
        assert_eq!(f[0].gpus[0].util_gpu, 3);
        assert_eq!(
            f[0].gpus[0].power_mw, 0,
            "missing measurements read as zero"
        );
    }

    #[test]
    fn errors_name_the_line() {
        let text = [line(1.0, "A", 1), "{\"t\": 2}".into(), line(3.0, "A", 1)].join("\n");
        let e = frames(&text, "x.jsonl").unwrap_err();
        assert!(e.starts_with("line 2 is not a reading"), "{e}");
        assert!(e.contains("sample"), "{e}");

        let text = [line(1.0, "A", 1), String::new(), "garbage".into()].join("\n");
        let e = frames(&text, "x.jsonl").unwrap_err();
        assert!(e.starts_with("line 3 is not a reading"), "{e}");

        let text = [line(2.0, "A", 1), line(1.0, "A", 1)].join("\n");
        let e = frames(&text, "x.jsonl").unwrap_err();
        assert!(e.contains("line 2") && e.contains("back in time"), "{e}");

        let text = [line(1.0, "A", 1), line(2.0, "B", 1)].join("\n");
        let e = frames(&text, "x.jsonl").unwrap_err();
        assert!(e.contains("line 2") && e.contains("GPU B"), "{e}");

        let e = frames(r#"{"t":1,"sample":{"gpus":[]}}"#, "x.jsonl").unwrap_err();
        assert!(e.contains("line 1") && e.contains("no GPUs"), "{e}");
    }

    #[test]
    fn empty_and_blank_files_are_empty() {
        assert_eq!(frames("", "x.json").unwrap_err(), "the file is empty");
        assert_eq!(
            frames(" \n\n\t\n", "x.jsonl").unwrap_err(),
            "the file is empty"
        );
    }

    #[test]
    fn a_single_reading_that_is_not_one_says_so() {
        let e = frames("{\"gpus\": []}", "x.json").unwrap_err();
        assert!(e.starts_with("not a reading"), "{e}");
        assert!(e.contains("sample"), "{e}");
    }

    #[test]
    fn read_at_picks_the_frame_and_loops() {
        let text = [
            line(100.0, "A", 1),
            line(101.0, "A", 2),
            line(103.0, "A", 3),
        ]
        .join("\n");
        let (frames, period) = frames(&text, "x.jsonl").unwrap();
        let r = ReplayReader {
            path: "x.jsonl".into(),
            gpus: Vec::new(),
            frames,
            period,
            opened: Instant::now(),
            opened_at: Utc::now(),
            speed: 1.0,
        };
        let util = |ms: u64| r.read_at(Duration::from_millis(ms)).gpus[0].util_gpu;
        assert_eq!(util(0), 1);
        assert_eq!(util(999), 1);
        assert_eq!(util(1000), 2);
        assert_eq!(util(2999), 2);
        assert_eq!(util(3000), 3);
        assert_eq!(util(3999), 3);
        assert_eq!(util(4000), 1, "the loop is 3 s + 1 s long");
        assert_eq!(util(4000 * 7 + 1500), 2);
        let at = r.read_at(Duration::from_secs(5)).at - r.opened_at;
        assert_eq!(at, chrono::Duration::seconds(5));
        assert_eq!(
            r.read_after(Duration::from_millis(1500)).gpus[0].util_gpu,
            2,
            "speed 1: read_after is read_at"
        );

        let fast = r.with_speed(10.0);
        let util = |ms: u64| fast.read_after(Duration::from_millis(ms)).gpus[0].util_gpu;
        assert_eq!(util(99), 1);
        assert_eq!(util(100), 2, "1 s of the trace in 0.1 s");
        assert_eq!(util(300), 3);
        assert_eq!(util(400), 1, "the 4 s loop in 0.4 s");
        let at = fast.read_after(Duration::from_millis(300)).at - fast.opened_at;
        assert_eq!(
            at,
            chrono::Duration::milliseconds(300),
            "at stays wall time"
        );
        for bad in [0.0, -2.0, f64::NAN, f64::INFINITY] {
            assert_eq!(fast_speed(bad), 1.0, "{bad}");
        }
    }

    fn fast_speed(speed: f64) -> f64 {
        let (frames, period) = frames(&line(1.0, "A", 1), "x.jsonl").unwrap();
        ReplayReader {
            path: "x.jsonl".into(),
            gpus: Vec::new(),
            frames,
            period,
            opened: Instant::now(),
            opened_at: Utc::now(),
            speed: 1.0,
        }
        .with_speed(speed)
        .speed
    }
}
