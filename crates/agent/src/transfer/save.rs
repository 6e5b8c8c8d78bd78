//! Save, in the child that runs as the owner: the files under the job's working directory that
//! match its globs are copied to the destination, each one read back there and its SHA-256
//! compared with the source's. The files stay where they were.

use super::child::SaveTask;
use gpubook_core::transfer::Location;
use gpubook_core::SavedFile;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

/// Saves what `task` names; the files saved, or why not.
pub fn save(task: &SaveTask) -> Result<Vec<SavedFile>, String> {
    let mut globs = globset::GlobSetBuilder::new();
    for g in &task.globs {
        let glob = globset::GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("{g}: {e}"))?;
        globs.add(glob);
    }
    let globs = globs.build().map_err(|e| e.to_string())?;
    let cwd = Path::new(&task.cwd);
    let mut found = Vec::new();
    for e in walkdir::WalkDir::new(cwd).follow_links(false) {
        let e = e.map_err(|e| format!("cannot read {}: {e}", task.cwd))?;
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e.path().strip_prefix(cwd).map_err(|e| e.to_string())?;
        if globs.is_match(rel) {
            found.push(rel.to_path_buf());
        }
    }
    found.sort();
    let dest = match Location::parse(&task.to).map_err(|e| e.to_string())? {
        Location::Path { path } => path,
        Location::S3 { bucket, prefix } => {
            return super::s3::save(&bucket, &prefix, cwd, &found, &task.s3);
        }
    };
    let mut saved = Vec::new();
    for rel in found {
        let from = cwd.join(&rel);
        let to = Path::new(&dest).join(&rel);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let (size, sum) = copy_hashing(&from, &to)
            .map_err(|e| format!("{} to {}: {e}", rel.display(), to.display()))?;
        let back = hash_file(&to).map_err(|e| format!("cannot read back {}: {e}", to.display()))?;
        if back != sum {
            return Err(format!(
                "{} changed on the way: SHA-256 {sum} here, {back} at {}",
                rel.display(),
                to.display()
            ));
        }
        saved.push(SavedFile {
            name: rel.display().to_string(),
            size,
            sha256: sum,
        });
    }
    Ok(saved)
}

/// Copies `from` to `to`, flushed to disk; its size and SHA-256 as read.
fn copy_hashing(from: &Path, to: &Path) -> io::Result<(u64, String)> {
    let mut src = fs::File::open(from)?;
    let mut dst = fs::File::create(to)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        size += n as u64;
    }
    dst.sync_all()?;
    Ok((size, hex(&hash.finalize())))
}

/// The SHA-256 of a file, hex.
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut hash = Sha256::new();
    io::copy(&mut f, &mut hash)?;
    Ok(hex(&hash.finalize()))
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
