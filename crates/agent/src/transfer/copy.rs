//! Stage-in, in the child that runs as the owner: each source is synced (rsync-like: a file
//! with the same size and modification time is not copied again) into a cache entry under
//! `<scratch>/<owner>/cache/<key>/data`, keyed by the source, so the same data staged for two
//! bookings is copied once; entries not in use are removed least recently used first to stay
//! under the quota; the booking's directory holds one link per stage name.

use super::child::{Progress, StageTask, TidyTask};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Report progress after this many bytes or files, whichever comes first.
const REPORT_BYTES: u64 = 64 << 20;
const REPORT_FILES: u64 = 256;

/// The cache key of a source: the first 16 bytes of its SHA-256, hex.
pub fn cache_key(source: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(source.as_bytes());
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Stages every entry of `task`; `report` gets the running figures.
pub fn stage(task: &StageTask, report: &mut dyn FnMut(&Progress)) -> Result<Progress, String> {
    let cache = task.owner_dir.join("cache");
    fs::create_dir_all(&cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let mut needed = 0;
    for (name, source) in &task.entries {
        needed += source_size(source, &task.s3).map_err(|e| format!("{name}: {e}"))?;
    }
    if needed > task.quota {
        return Err(format!(
            "the data ({}) is more than the stage quota of {} each person may keep on this \
             server",
            gpubook_core::size::format_size(needed),
            gpubook_core::size::format_size(task.quota)
        ));
    }
    let own: Vec<String> = task.entries.iter().map(|(_, s)| cache_key(s)).collect();
    evict(&cache, &own, &task.pinned, task.quota - needed)?;
    let mut progress = Progress {
        total_bytes: needed,
        ..Progress::default()
    };
    fs::create_dir_all(&task.booking_dir)
        .map_err(|e| format!("cannot create {}: {e}", task.booking_dir.display()))?;
    for ((name, source), key) in task.entries.iter().zip(&own) {
        let entry = cache.join(key);
        fs::create_dir_all(&entry).map_err(|e| format!("{name}: {e}"))?;
        fs::write(entry.join("source"), source).map_err(|e| format!("{name}: {e}"))?;
        touch(&entry.join("used"));
        progress.name = name.clone();
        let mut last = (
            progress.done_bytes,
            progress.copied_files + progress.kept_files,
        );
        let mut every = |p: &Progress| {
            let files = p.copied_files + p.kept_files;
            if p.done_bytes - last.0 >= REPORT_BYTES || files - last.1 >= REPORT_FILES {
                last = (p.done_bytes, files);
                report(p);
            }
        };
        let data = entry.join("data");
        match s3_parts(source) {
            Some((bucket, prefix)) => {
                super::s3::sync(&bucket, &prefix, &data, &mut progress, &mut every, &task.s3)
                    .map_err(|e| format!("{name}: {e}"))?
            }
            None => sync(Path::new(source), &data, &mut progress, &mut every)
                .map_err(|e| format!("{name}: copying {source}: {e}"))?,
        }
        let link = task.booking_dir.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(entry.join("data"), &link)
            .map_err(|e| format!("{name}: cannot link {}: {e}", link.display()))?;
        report(&progress);
    }
    progress.name = String::new();
    Ok(progress)
}

/// Removes the `booking-N` directories under the owner's scratch directory other than those
/// of `task.keep` (links only: the cached data stays for the next booking, under the quota).
/// Runs as the owner, and a link planted there is removed, never followed.
pub fn tidy(task: &TidyTask) -> Result<Vec<String>, String> {
    let mut gone = Vec::new();
    let listing = match fs::read_dir(&task.owner_dir) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(gone),
        Err(e) => return Err(format!("{}: {e}", task.owner_dir.display())),
    };
    for e in listing.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_prefix("booking-")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if task.keep.contains(&id) {
            continue;
        }
        let path = e.path();
        let removed = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(e) => Err(e),
        };
        removed.map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        gone.push(name);
    }
    gone.sort();
    Ok(gone)
}

/// The bytes under a source: the objects under an `s3://` prefix, or the regular files under
/// a path.
pub fn source_size(source: &str, s3: &gpubook_core::S3Access) -> Result<u64, String> {
    match s3_parts(source) {
        Some((bucket, prefix)) => Ok(super::s3::list(&bucket, &prefix, s3)?.0),
        None => tree_size(Path::new(source)).map_err(|e| format!("cannot read {source}: {e}")),
    }
}

/// The bucket and prefix of an `s3://` source.
fn s3_parts(source: &str) -> Option<(String, String)> {
    match gpubook_core::transfer::Location::parse(source).ok()? {
        gpubook_core::transfer::Location::S3 { bucket, prefix } => Some((bucket, prefix)),
        gpubook_core::transfer::Location::Path { .. } => None,
    }
}

/// Bytes of the regular files under `path` (or of the file `path`).
pub fn tree_size(path: &Path) -> io::Result<u64> {
    let meta = fs::metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for e in walkdir::WalkDir::new(path).follow_links(false) {
        let e = e.map_err(io::Error::from)?;
        if e.file_type().is_file() {
            total += e.metadata().map_err(io::Error::from)?.len();
        }
    }
    Ok(total)
}

/// Syncs `src` (a file or a tree) to `dst`: files whose size and modification time already
/// match are kept, the rest copied and given the source's modification time.
fn sync(
    src: &Path,
    dst: &Path,
    p: &mut Progress,
    report: &mut dyn FnMut(&Progress),
) -> io::Result<()> {
    let meta = fs::metadata(src)?;
    if !meta.is_dir() {
        return sync_file(src, &meta, dst, p);
    }
    for e in walkdir::WalkDir::new(src).follow_links(false) {
        let e = e.map_err(io::Error::from)?;
        let rel = e.path().strip_prefix(src).map_err(io::Error::other)?;
        let to = dst.join(rel);
        let kind = e.file_type();
        if kind.is_dir() {
            fs::create_dir_all(&to)?;
        } else if kind.is_file() {
            sync_file(e.path(), &e.metadata().map_err(io::Error::from)?, &to, p)?;
            report(p);
        } else if kind.is_symlink() {
            let target = fs::read_link(e.path())?;
            if fs::read_link(&to).ok().as_ref() != Some(&target) {
                let _ = fs::remove_file(&to);
                std::os::unix::fs::symlink(target, &to)?;
            }
        }
    }
    Ok(())
}

fn sync_file(src: &Path, meta: &fs::Metadata, dst: &Path, p: &mut Progress) -> io::Result<()> {
    let mtime = meta.modified()?;
    if let Ok(have) = fs::symlink_metadata(dst) {
        if have.is_file() && have.len() == meta.len() && have.modified().ok() == Some(mtime) {
            p.kept_files += 1;
            p.done_bytes += meta.len();
            return Ok(());
        }
    }
    // Copied beside it and renamed: a copy cut short never passes for a complete one.
    let tmp = temp_beside(dst);
    fs::copy(src, &tmp)?;
    fs::File::options()
        .write(true)
        .open(&tmp)?
        .set_modified(mtime)?;
    fs::rename(&tmp, dst)?;
    p.copied_files += 1;
    p.done_bytes += meta.len();
    Ok(())
}

fn temp_beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".gpubook-partial");
    path.with_file_name(name)
}

fn touch(path: &Path) {
    let _ = fs::write(path, b"");
    if let Ok(f) = fs::File::options().write(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Removes cache entries, least recently used first, until those left (other than `own`,
/// which are about to be filled) take at most `room` bytes. Entries in `own` or `pinned`
/// (staged for bookings still to come) are never removed.
fn evict(cache: &Path, own: &[String], pinned: &[String], room: u64) -> Result<(), String> {
    let mut entries = Vec::new();
    let listing = fs::read_dir(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    for e in listing.flatten() {
        let key = e.file_name().to_string_lossy().into_owned();
        if own.contains(&key) {
            continue;
        }
        let size = tree_size(&e.path().join("data")).unwrap_or(0);
        let used = fs::metadata(e.path().join("used"))
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        entries.push((used, key, size, e.path()));
    }
    entries.sort();
    let mut total: u64 = entries.iter().map(|e| e.2).sum();
    for (_, key, size, path) in entries {
        if total <= room {
            break;
        }
        if pinned.contains(&key) {
            continue;
        }
        fs::remove_dir_all(&path).map_err(|e| format!("cannot evict {}: {e}", path.display()))?;
        total -= size;
    }
    if total > room {
        return Err(format!(
            "the stage quota is full with data staged for bookings still to come ({} kept)",
            gpubook_core::size::format_size(total)
        ));
    }
    Ok(())
}
