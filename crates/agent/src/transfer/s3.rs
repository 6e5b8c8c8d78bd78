//! S3 destinations and sources. Not built yet: refused with a clear reason, so a booking that
//! names one learns it before its slot (stage) or right after its job (save).

use gpubook_core::SavedFile;
use std::path::{Path, PathBuf};

/// Saving to `s3://bucket/prefix`: not supported by this agent yet.
pub fn save(
    bucket: &str,
    prefix: &str,
    _cwd: &Path,
    _files: &[PathBuf],
) -> Result<Vec<SavedFile>, String> {
    Err(format!(
        "s3://{bucket}/{prefix}: this agent cannot write to S3 yet; save to a directory on the \
         server"
    ))
}

/// Staging from `s3://...`: not supported by this agent yet.
pub fn unsupported(source: &str) -> String {
    format!("{source}: this agent cannot stage from S3 yet; stage from a path on the server")
}
