//! S3 sources and destinations, in the copy child running as the owner, through
//! `object_store`. The credentials are the owner's on the server, as the booking names them
//! (see [`super::credentials`]). gpubook never stores them.

use super::child::Progress;
use super::save::hex;
use futures::StreamExt;
use gpubook_core::{S3Access, SavedFile};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A store for `bucket` with the owner's credentials that `s3` names.
fn store(bucket: &str, s3: &S3Access) -> Result<Arc<dyn ObjectStore>, String> {
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
    let c = super::credentials::resolve(s3, &home).map_err(|e| e.to_string())?;
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_access_key_id(c.access_key_id)
        .with_secret_access_key(c.secret_access_key)
        .with_region(c.region);
    if let Some(token) = c.session_token {
        b = b.with_token(token);
    }
    if let Some(endpoint) = c.endpoint {
        b = b
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint);
    }
    Ok(Arc::new(b.build().map_err(|e| e.to_string())?))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn key(prefix: &str, rel: &str) -> ObjectPath {
    ObjectPath::from(if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    })
}

/// Saves `files` (relative to `cwd`) under `s3://bucket/prefix/`, each one read back and its
/// SHA-256 compared with the local file's.
pub fn save(
    bucket: &str,
    prefix: &str,
    cwd: &Path,
    files: &[PathBuf],
    s3: &S3Access,
) -> Result<Vec<SavedFile>, String> {
    let store = store(bucket, s3)?;
    runtime()?.block_on(async {
        let mut saved = Vec::new();
        for rel in files {
            let name = rel.display().to_string();
            let at = key(prefix, &name);
            let url = format!("s3://{bucket}/{at}");
            let mut src = tokio::fs::File::open(cwd.join(rel))
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            let mut up = object_store::buffered::BufWriter::new(store.clone(), at.clone());
            let (mut hash, mut size, mut buf) = (Sha256::new(), 0u64, vec![0u8; 1 << 20]);
            loop {
                let n = src
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
                size += n as u64;
                up.write_all(&buf[..n])
                    .await
                    .map_err(|e| format!("{name} to {url}: {e}"))?;
            }
            up.shutdown()
                .await
                .map_err(|e| format!("{name} to {url}: {e}"))?;
            let sum = hex(&hash.finalize());
            let back = hash_object(&store, &at)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if back != sum {
                return Err(format!(
                    "{name} changed on the way: SHA-256 {sum} here, {back} at {url}"
                ));
            }
            saved.push(SavedFile {
                name,
                size,
                sha256: sum,
            });
        }
        Ok(saved)
    })
}

async fn hash_object(store: &Arc<dyn ObjectStore>, at: &ObjectPath) -> Result<String, String> {
    let mut body = store
        .get(at)
        .await
        .map_err(|e| e.to_string())?
        .into_stream();
    let mut hash = Sha256::new();
    while let Some(chunk) = body.next().await {
        hash.update(chunk.map_err(|e| e.to_string())?);
    }
    Ok(hex(&hash.finalize()))
}

/// The objects under `s3://bucket/prefix` and their total size.
pub fn list(
    bucket: &str,
    prefix: &str,
    s3: &S3Access,
) -> Result<(u64, Vec<object_store::ObjectMeta>), String> {
    let store = store(bucket, s3)?;
    let under = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
    runtime()?.block_on(async {
        let mut all = Vec::new();
        let mut listing = store.list(under.as_ref());
        while let Some(m) = listing.next().await {
            all.push(m.map_err(|e| format!("listing s3://{bucket}/{prefix}: {e}"))?);
        }
        let total = all.iter().map(|m| m.size).sum();
        Ok((total, all))
    })
}

/// Syncs the objects under `s3://bucket/prefix` into `dst`: an object whose file there has its
/// size and modification time is kept, the rest downloaded.
pub fn sync(
    bucket: &str,
    prefix: &str,
    dst: &Path,
    p: &mut Progress,
    report: &mut dyn FnMut(&Progress),
    s3: &S3Access,
) -> Result<(), String> {
    let (_, objects) = list(bucket, prefix, s3)?;
    let store = store(bucket, s3)?;
    runtime()?.block_on(async {
        for m in objects {
            let rel = m.location.as_ref();
            let rel = rel
                .strip_prefix(prefix)
                .unwrap_or(rel)
                .trim_start_matches('/');
            if rel.is_empty() || rel.split('/').any(|c| c == "..") {
                continue;
            }
            let to = dst.join(rel);
            let mtime = std::time::SystemTime::from(m.last_modified);
            let have = std::fs::metadata(&to).ok();
            if have.is_some_and(|h| h.len() == m.size && h.modified().ok() == Some(mtime)) {
                p.kept_files += 1;
                p.done_bytes += m.size;
                continue;
            }
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            let bytes = store
                .get(&m.location)
                .await
                .map(|g| g.into_stream())
                .map_err(|e| format!("s3://{bucket}/{}: {e}", m.location))?;
            let tmp = to.with_extension("gpubook-partial");
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| e.to_string())?;
            let mut bytes = bytes;
            while let Some(chunk) = bytes.next().await {
                let chunk = chunk.map_err(|e| format!("s3://{bucket}/{}: {e}", m.location))?;
                file.write_all(&chunk).await.map_err(|e| e.to_string())?;
            }
            file.flush().await.map_err(|e| e.to_string())?;
            let file = file.into_std().await;
            file.set_modified(mtime).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &to).map_err(|e| e.to_string())?;
            p.copied_files += 1;
            p.done_bytes += m.size;
            report(p);
        }
        Ok(())
    })
}
