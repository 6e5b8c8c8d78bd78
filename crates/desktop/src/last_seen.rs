//! What the app remembers across restarts: the last event number seen per server, so each
//! event is notified once. Kept as JSON in `$XDG_DATA_HOME/gpubook/app-state.json`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    /// Per server key: the last event number handled.
    #[serde(default)]
    last_event: BTreeMap<String, u64>,
}

/// The last event number per server, written through to disk.
#[derive(Debug)]
pub struct LastSeen {
    path: PathBuf,
    stored: Mutex<Stored>,
}

impl LastSeen {
    /// The default file.
    pub fn default_path() -> PathBuf {
        crate::paths::data_dir().join("app-state.json")
    }

    /// Opens the record at `path` (empty if the file is missing or unreadable).
    pub fn open(path: &Path) -> Self {
        let stored = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path: path.to_path_buf(),
            stored: Mutex::new(stored),
        }
    }

    /// The last event handled from `server` (a key that names the agent, e.g. its
    /// address and its server name).
    pub fn last_event(&self, server: &str) -> Option<u64> {
        self.stored.lock().unwrap().last_event.get(server).copied()
    }

    /// Records that events up to `seq` from `server` have been handled. Never goes back.
    pub fn set_last_event(&self, server: &str, seq: u64) {
        let bytes = {
            let mut s = self.stored.lock().unwrap();
            let e = s.last_event.entry(server.to_string()).or_insert(0);
            if *e >= seq {
                return;
            }
            *e = seq;
            serde_json::to_vec(&*s).expect("the last events serialize")
        };
        if let Err(e) = crate::paths::write_atomic(&self.path, &bytes) {
            eprintln!(
                "gpubook: cannot remember the last event in {}: {e}",
                self.path.display()
            );
        }
    }
}

impl LastSeen {
    /// Forgets `server` (its agent was replaced).
    pub fn forget(&self, server: &str) {
        let bytes = {
            let mut s = self.stored.lock().unwrap();
            s.last_event.remove(server);
            serde_json::to_vec(&*s).expect("the last events serialize")
        };
        let _ = crate::paths::write_atomic(&self.path, &bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_across_reopen_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        let m = LastSeen::open(&p);
        assert_eq!(m.last_event("a"), None);
        m.set_last_event("a", 5);
        m.set_last_event("a", 3);
        let m2 = LastSeen::open(&p);
        assert_eq!(m2.last_event("a"), Some(5));
    }
}
