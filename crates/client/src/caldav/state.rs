//! What a sync remembers between runs, in one JSON file per account and server under the
//! person's state directory: the changes not yet sent (the durable queue), and what it knows
//! of the collection (each of its events' href and ETag, and the ETags of objects that are
//! not gpubook's, so they are not fetched again).
//!
//! The file is replaced atomically (written beside it, synced, renamed) and locked for the
//! life of the sync, so two syncs of one account never interleave.

use super::CaldavError;
use crate::ical::EventData;
use crate::private_files;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file format's version.
const VERSION: u32 = 1;

/// One of gpubook's events as it is on the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Known {
    /// Where it is.
    pub href: String,
    /// Its ETag after our last write or look; `None` when the server did not say.
    pub etag: Option<String>,
    /// What it shows.
    pub event: EventData,
}

/// A change waiting to be sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Pending {
    /// Create or update the event.
    Put {
        /// What it must show.
        event: EventData,
    },
    /// Remove it (its booking was cancelled or denied).
    Delete {
        /// The booking's revision that asked for it.
        sequence: u32,
    },
}

impl Pending {
    /// The booking revision the change comes from.
    pub fn sequence(&self) -> u32 {
        match self {
            Pending::Put { event } => event.sequence,
            Pending::Delete { sequence } => *sequence,
        }
    }
}

/// The file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Saved {
    /// [`VERSION`].
    pub version: u32,
    /// The collection.
    pub url: String,
    /// The account.
    pub user: String,
    /// The agent's server whose bookings are synced.
    pub server: String,
    /// gpubook's events on the server, by UID.
    pub known: BTreeMap<String, Known>,
    /// Objects that are not gpubook's: href → the ETag they had when we looked.
    pub foreign: BTreeMap<String, String>,
    /// Changes not yet sent, by UID: only the latest per event is kept.
    pub pending: BTreeMap<String, Pending>,
}

/// The state file, locked while this value lives.
#[derive(Debug)]
pub(crate) struct StateFile {
    /// The JSON file.
    path: PathBuf,
    /// Holds the lock (flock on `<file>.lock`) until dropped.
    _lock: File,
    /// What it says.
    pub saved: Saved,
}

impl StateFile {
    /// Opens (or starts) the state of syncing `server`'s bookings to `user` at `url`, in `dir`.
    pub fn open(dir: &Path, url: &str, user: &str, server: &str) -> Result<Self, CaldavError> {
        let err = |path: &Path, e: &dyn std::fmt::Display| CaldavError::State {
            path: path.to_path_buf(),
            error: e.to_string(),
        };
        private_files::create_dir_all(dir).map_err(|e| err(dir, &e))?;
        let name = format!("caldav-{:016x}", fnv1a(&[url, user, server]));
        let path = dir.join(format!("{name}.json"));
        let lock_path = dir.join(format!("{name}.lock"));
        let lock = private_files::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| err(&lock_path, &e))?;
        if !matches!(private_files::try_lock(&lock), Ok(true)) {
            return Err(CaldavError::Busy {
                url: url.to_string(),
                path,
            });
        }
        let saved = match std::fs::read(&path) {
            Ok(bytes) => {
                let s: Saved = serde_json::from_slice(&bytes).map_err(|e| err(&path, &e))?;
                if s.version != VERSION {
                    return Err(err(&path, &format!("unknown version {}", s.version)));
                }
                s
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved {
                version: VERSION,
                url: url.to_string(),
                user: user.to_string(),
                server: server.to_string(),
                ..Saved::default()
            },
            Err(e) => return Err(err(&path, &e)),
        };
        Ok(Self {
            path,
            _lock: lock,
            saved,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the state durably: beside the file, synced, renamed over it, directory synced.
    pub fn save(&self) -> Result<(), CaldavError> {
        let err = |e: std::io::Error| CaldavError::State {
            path: self.path.clone(),
            error: e.to_string(),
        };
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec(&self.saved).expect("the state serialises");
        let mut f = private_files::options()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        Ok(())
    }
}

/// A stable 64-bit FNV-1a hash of the parts (with separators), for file names.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_sync_of_the_same_account_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = StateFile::open(dir.path(), "http://x/cal/", "u", "lab1").unwrap();
        let b = StateFile::open(dir.path(), "http://x/cal/", "u", "lab1");
        assert!(matches!(b, Err(CaldavError::Busy { .. })), "{b:?}");
        a.save().unwrap();
        drop(a);
        StateFile::open(dir.path(), "http://x/cal/", "u", "lab1").unwrap();
    }
}
