//! Live readings of a cluster's GPUs, from gpubook agents on its nodes.
//!
//! Slurm knows which GPUs it has allocated, not how they are used. Where a gpubook agent also
//! runs on a compute node (`serve --gpus nvml --publish-readings DIR`), it writes each reading
//! to `DIR/<node>.json`; the Slurm agent (`serve --gpus slurm --node-readings DIR`) puts the
//! newest one of each node on that node's lanes, so the calendar's GPU page shows memory,
//! utilisation, temperature, power and processes, and the watch reads a booking's usage and
//! intruders from them. `DIR` is any directory both see: the cluster's shared file system.
//!
//! A node's GPU `i` (NVML's index, the order of `/dev/nvidiaN` on a normal node) is lane `i`
//! of the node, as Slurm numbers a node's GPUs (its GRES index, in `gres_detail`'s `IDX`).
//!
//! The Slurm agent runs as root and reads what the nodes wrote, so it trusts the directory
//! only when nobody but its owner can write it (no group or other write, no link), reads
//! only regular files of its owner, at most [`MAX_FILE`] bytes each, and takes a reading
//! only while it is younger than [`STALE_AFTER`]. A file that fails any of this is left out
//! (the lanes then show what Slurm reports), with one line in the log.

use chrono::{DateTime, Utc};
use gpubook_core::Gpu;
use gpubook_proto::Readings;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How old a node's reading may be and still be shown.
pub const STALE_AFTER: chrono::Duration = chrono::Duration::seconds(30);

/// The largest readings file read (a node with 16 GPUs and many processes writes a few KiB).
pub const MAX_FILE: u64 = 1 << 20;

/// Whether `node` is a name a readings file may have: Slurm node names are host names.
pub fn valid_node(node: &str) -> bool {
    !node.is_empty()
        && node.len() <= 253
        && !node.starts_with('.')
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Writes `readings` as `dir/<node>.json`, whole or not at all (a temporary file renamed
/// over it), readable by all and writable by this user only.
pub fn publish(dir: &Path, node: &str, readings: &Readings) -> std::io::Result<()> {
    if !valid_node(node) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{node:?} is not a node name"),
        ));
    }
    let json = serde_json::to_vec(readings).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(".{node}.json.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    // Readable by the controller's agent whatever this agent's umask (its state is 0700).
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    f.write_all(&json)?;
    f.sync_data()?;
    std::fs::rename(&tmp, dir.join(format!("{node}.json")))
}

/// Why a node's readings were left out.
#[derive(Debug, thiserror::Error)]
pub enum NodeReadingsError {
    /// The directory or the file may be written by someone other than its owner.
    #[error("{path}: {why}; readings from it are not used")]
    Untrusted {
        /// Which.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// It could not be read or is not a reading.
    #[error("{path}: {why}")]
    Unreadable {
        /// Which.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Checks that only `dir`'s owner can write it; its owner.
pub fn check_dir(dir: &Path) -> Result<u32, NodeReadingsError> {
    let untrusted = |why: String| NodeReadingsError::Untrusted {
        path: dir.to_path_buf(),
        why,
    };
    let meta = std::fs::symlink_metadata(dir).map_err(|e| untrusted(e.to_string()))?;
    if !meta.is_dir() {
        return Err(untrusted("not a directory".into()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted(format!(
            "group or others may write it (mode {:o}): make it writable by its owner only",
            meta.mode() & 0o777
        )));
    }
    Ok(meta.uid())
}

/// The reading `dir/<node>.json` holds, if it is there, trusted (see the module) and younger
/// than [`STALE_AFTER`] at `now`.
pub fn read_node(
    dir: &Path,
    node: &str,
    now: DateTime<Utc>,
) -> Result<Option<Readings>, NodeReadingsError> {
    let owner = check_dir(dir)?;
    if !valid_node(node) {
        return Ok(None);
    }
    let path = dir.join(format!("{node}.json"));
    let unreadable = |why: String| NodeReadingsError::Unreadable {
        path: path.clone(),
        why,
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e.to_string())),
    };
    let meta = file.metadata().map_err(|e| unreadable(e.to_string()))?;
    if !meta.is_file() || meta.uid() != owner || meta.mode() & 0o022 != 0 {
        return Err(NodeReadingsError::Untrusted {
            path,
            why: "not a regular file of the directory's owner, writable by them only".into(),
        });
    }
    if meta.len() > MAX_FILE {
        return Err(unreadable(format!("larger than {MAX_FILE} bytes")));
    }
    let mut text = Vec::new();
    file.take(MAX_FILE)
        .read_to_end(&mut text)
        .map_err(|e| unreadable(e.to_string()))?;
    let readings: Readings =
        serde_json::from_slice(&text).map_err(|e| unreadable(format!("not a reading: {e}")))?;
    Ok((now - readings.at <= STALE_AFTER && readings.at <= now + STALE_AFTER).then_some(readings))
}

/// Puts each node's fresh reading from `dir` on its lanes of `base` (a reading of `gpus`, the
/// cluster's lanes in order); what cannot be used is logged by `log` and left as it was.
pub fn merge(
    gpus: &[Gpu],
    base: &mut Readings,
    dir: &Path,
    now: DateTime<Utc>,
    log: &mut dyn FnMut(NodeReadingsError),
) {
    let mut nodes: Vec<&str> = gpus.iter().filter_map(|g| g.node.as_deref()).collect();
    nodes.dedup();
    for node in nodes {
        let mut read = match read_node(dir, node, now) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                log(e);
                continue;
            }
        };
        read.gpus.sort_by_key(|g| g.index);
        let lanes = base
            .gpus
            .iter_mut()
            .zip(gpus)
            .filter(|(_, g)| g.node.as_deref() == Some(node));
        for ((lane, _), live) in lanes.zip(read.gpus) {
            lane.memory_used = live.memory_used;
            lane.memory_total = live.memory_total;
            lane.util_gpu = live.util_gpu;
            lane.util_mem = live.util_mem;
            lane.temperature_c = live.temperature_c;
            lane.power_mw = live.power_mw;
            lane.power_limit_mw = live.power_limit_mw;
            // A fault stays the node's to report: Slurm, not gpubook, takes a node's GPU
            // out (the admin drains it), and lanes are not devices to put in maintenance.
            lane.processes = live.processes;
        }
    }
}

/// A reader that also writes each reading to `dir/<node>.json` for a Slurm agent
/// (`--publish-readings`).
#[derive(Debug)]
pub struct Publishing {
    inner: Box<dyn crate::gpu::GpuReader>,
    dir: PathBuf,
    node: String,
    /// Whether the last write failed (logged once per run of failures).
    failing: bool,
}

impl Publishing {
    /// `inner`'s readings, written to `dir` as node `node`'s.
    pub fn new(inner: Box<dyn crate::gpu::GpuReader>, dir: PathBuf, node: String) -> Self {
        Self {
            inner,
            dir,
            node,
            failing: false,
        }
    }
}

impl crate::gpu::GpuReader for Publishing {
    fn inventory(&self) -> Vec<Gpu> {
        self.inner.inventory()
    }

    fn read(&mut self) -> Result<Readings, crate::gpu::GpuError> {
        let r = self.inner.read()?;
        match publish(&self.dir, &self.node, &r) {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                eprintln!(
                    "gpubook-agent: cannot write the readings to {}: {e}",
                    self.dir.display()
                );
            }
            Err(_) => {}
        }
        Ok(r)
    }

    fn source(&self) -> &'static str {
        self.inner.source()
    }

    fn simulated(&self) -> bool {
        self.inner.simulated()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::reader::uuid;
    use gpubook_proto::GpuProcess;
    use std::os::unix::fs::PermissionsExt;

    fn lanes() -> Vec<Gpu> {
        [("n1", 0), ("n1", 1), ("n2", 0)]
            .iter()
            .enumerate()
            .map(|(i, (node, k))| Gpu {
                uuid: uuid(node, *k),
                index: i as u32,
                name: format!("{node} · H200"),
                memory_total: 0,
                server: "c".into(),
                simulated: false,
                node: Some(node.to_string()),
            })
            .collect()
    }

    fn blank(gpus: &[Gpu], at: DateTime<Utc>) -> Readings {
        Readings {
            at,
            gpus: gpus.iter().map(crate::slurm::reader::unread).collect(),
        }
    }

    /// What node n1's agent read: its two GPUs, the second busy with alice's process.
    fn n1_reading(at: DateTime<Utc>) -> Readings {
        let mut r = blank(&lanes()[..2], at);
        for (i, g) in r.gpus.iter_mut().enumerate() {
            g.uuid = gpubook_core::GpuUuid(format!("GPU-real-{i}"));
            g.memory_total = 150 << 30;
        }
        r.gpus[1].util_gpu = 87;
        r.gpus[1].memory_used = 40 << 30;
        r.gpus[1].processes = vec![GpuProcess {
            pid: 4242,
            user: Some("alice".into()),
            used_bytes: 40 << 30,
        }];
        r
    }

    fn shared() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn a_nodes_reading_goes_on_its_lanes_and_nowhere_else() {
        let dir = shared();
        let now = Utc::now();
        publish(dir.path(), "n1", &n1_reading(now)).unwrap();
        let mode = std::fs::metadata(dir.path().join("n1.json"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "readable by the controller's agent");
        let gpus = lanes();
        let mut base = blank(&gpus, now);
        let mut errors = Vec::new();
        merge(&gpus, &mut base, dir.path(), now, &mut |e| errors.push(e));
        assert!(errors.is_empty(), "{errors:?}");
        // Lanes keep their own names; the figures are the node's.
        assert_eq!(base.gpus[1].uuid, uuid("n1", 1));
        assert_eq!(base.gpus[1].util_gpu, 87);
        assert_eq!(base.gpus[1].processes[0].user.as_deref(), Some("alice"));
        assert_eq!(base.gpus[0].memory_total, 150 << 30);
        // n2 published nothing: what Slurm reports stays.
        assert_eq!(base.gpus[2].memory_total, 0);
    }

    #[test]
    fn stale_untrusted_and_odd_files_are_left_out() {
        let now = Utc::now();
        let gpus = lanes();
        let merged = |dir: &Path| {
            let mut base = blank(&gpus, now);
            let mut errors = Vec::new();
            merge(&gpus, &mut base, dir, now, &mut |e| {
                errors.push(e.to_string())
            });
            (base.gpus[1].util_gpu, errors)
        };
        // A reading older than STALE_AFTER: the node agent has stopped.
        let dir = shared();
        publish(dir.path(), "n1", &n1_reading(now - STALE_AFTER * 2)).unwrap();
        assert_eq!(merged(dir.path()), (0, Vec::new()));
        // A directory others may write: anyone could forge readings.
        let dir = shared();
        publish(dir.path(), "n1", &n1_reading(now)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let (util, errors) = merged(dir.path());
        assert_eq!(util, 0);
        assert!(
            errors[0].contains("group or others may write it"),
            "{errors:?}"
        );
        // A link in place of the file, a file others may write, a file too big, not JSON.
        let dir = shared();
        let elsewhere = shared();
        publish(elsewhere.path(), "n1", &n1_reading(now)).unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join("n1.json"), dir.path().join("n1.json"))
            .unwrap();
        let (util, errors) = merged(dir.path());
        assert_eq!((util, errors.len()), (0, 1), "{errors:?}");
        let dir = shared();
        publish(dir.path(), "n1", &n1_reading(now)).unwrap();
        let file = dir.path().join("n1.json");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (util, errors) = merged(dir.path());
        assert_eq!(util, 0);
        assert!(errors[0].contains("writable by them only"), "{errors:?}");
        std::fs::write(&file, vec![b' '; MAX_FILE as usize + 1]).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(merged(dir.path()).1[0].contains("larger than"));
        std::fs::write(&file, b"{\"at\": 1").unwrap();
        assert!(merged(dir.path()).1[0].contains("not a reading"));
        // A node name that is not a host name is never a path.
        assert!(!valid_node("../etc/passwd") && !valid_node(".hidden") && !valid_node(""));
        assert!(publish(dir.path(), "../x", &n1_reading(now)).is_err());
    }
}
