//! What earlier stages took: the size last staged from each source and the throughput of the
//! copies, so a stage can begin early enough for its slot. A small JSON file in the agent's
//! state directory; lost or unreadable, it is started afresh (the stage then begins at
//! [`super::STAGE_AHEAD`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Figures {
    /// Bytes per second of the copies so far (a moving average); 0 when none was measured.
    bytes_per_sec: f64,
    /// Bytes last staged from each source.
    sizes: BTreeMap<String, u64>,
}

/// The history, behind a plain mutex (never held across an await).
#[derive(Debug)]
pub struct History {
    /// Where it is kept.
    path: PathBuf,
    /// Its figures.
    figures: Mutex<Figures>,
}

impl History {
    /// The history kept at `path`.
    pub fn new(path: PathBuf) -> Self {
        let figures = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path,
            figures: Mutex::new(figures),
        }
    }

    /// How long copying `sources` is expected to take; zero where nothing is known.
    pub fn estimate<'a>(&self, sources: impl Iterator<Item = &'a String>) -> chrono::TimeDelta {
        let f = self.figures.lock().unwrap();
        if f.bytes_per_sec <= 0.0 {
            return chrono::TimeDelta::zero();
        }
        let bytes: u64 = sources.filter_map(|s| f.sizes.get(s)).sum();
        chrono::TimeDelta::seconds((bytes as f64 / f.bytes_per_sec).ceil() as i64)
    }

    /// Records a stage of `sources` totalling `total` bytes, of which `copied` were copied in
    /// `took`.
    pub fn record(
        &self,
        sources: &BTreeMap<String, String>,
        total: u64,
        copied: u64,
        took: Duration,
    ) {
        let mut f = self.figures.lock().unwrap();
        if sources.len() == 1 {
            if let Some(s) = sources.values().next() {
                f.sizes.insert(s.clone(), total);
            }
        }
        // Only a copy large enough to time says anything about throughput.
        if copied >= 64 << 20 && took.as_secs_f64() > 0.0 {
            let rate = copied as f64 / took.as_secs_f64();
            f.bytes_per_sec = if f.bytes_per_sec > 0.0 {
                0.7 * f.bytes_per_sec + 0.3 * rate
            } else {
                rate
            };
        }
        if let Ok(text) = serde_json::to_vec(&*f) {
            let tmp = self.path.with_extension("json.tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, &self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_comes_from_the_last_size_and_the_measured_throughput() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stage-history.json");
        let h = History::new(path.clone());
        let src = "/nfs/coco".to_string();
        assert_eq!(h.estimate([&src].into_iter()), chrono::TimeDelta::zero());
        let one = BTreeMap::from([("coco".to_string(), src.clone())]);
        // 1 GiB copied in 10 s: 100 MiB/s, kept across a restart.
        h.record(&one, 1 << 30, 1 << 30, Duration::from_secs(10));
        let again = History::new(path);
        assert_eq!(again.estimate([&src].into_iter()).num_seconds(), 10);
        // A copy that found everything there says nothing about throughput.
        again.record(&one, 2 << 30, 0, Duration::from_millis(5));
        assert_eq!(again.estimate([&src].into_iter()).num_seconds(), 20);
    }
}
