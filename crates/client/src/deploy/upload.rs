//! The agent binary this client carries, its checksum, and its upload to the account.

use super::{deploy_error, sh, DeployError};
use crate::ssh::Session;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// A file's size and modification time: when both are unchanged, so is its checksum.
type Stamp = (u64, Option<std::time::SystemTime>);

/// Checksums of agent binaries this process read already, so a connect hashes a binary of
/// tens of megabytes once, not every time. A plain mutex: never held across an await.
static CHECKSUMS: std::sync::Mutex<Vec<(PathBuf, Stamp, String)>> =
    std::sync::Mutex::new(Vec::new());

/// The agent binary this client carries.
#[derive(Debug)]
pub(super) struct LocalAgent {
    /// Where it is.
    pub(super) path: PathBuf,
    /// Its bytes, when they were read now (not when the checksum came from the cache).
    pub(super) bytes: Option<Vec<u8>>,
    /// Their SHA-256, hex.
    pub(super) sha256: String,
}

impl LocalAgent {
    /// Reads the build at `path` and its checksum (from the cache when the file is unchanged).
    pub(super) fn read(server: &str, path: PathBuf) -> Result<Self, DeployError> {
        let unreadable = |e: std::io::Error| {
            deploy_error(
                server,
                format!(
                    "no gpubook agent runs there and the agent binary to upload cannot be read at {}: {e}. Install the gpubook package (its agents are in {}), or set GPUBOOK_AGENT_BINARY",
                    path.display(),
                    super::builds::PACKAGED_AGENTS
                ),
            )
        };
        let meta = std::fs::metadata(&path).map_err(unreadable)?;
        let stamp = (meta.len(), meta.modified().ok());
        let known = CHECKSUMS
            .lock()
            .unwrap()
            .iter()
            .find(|(p, s, _)| *p == path && *s == stamp)
            .map(|(_, _, sum)| sum.clone());
        if let Some(sha256) = known {
            return Ok(Self {
                path,
                bytes: None,
                sha256,
            });
        }
        let bytes = std::fs::read(&path).map_err(unreadable)?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let mut cache = CHECKSUMS.lock().unwrap();
        cache.retain(|(p, _, _)| *p != path);
        cache.push((path.clone(), stamp, sha256.clone()));
        Ok(Self {
            path,
            bytes: Some(bytes),
            sha256,
        })
    }

    /// Its bytes, read again when the checksum came from the cache.
    pub(super) fn bytes(&self, server: &str) -> Result<std::borrow::Cow<'_, [u8]>, DeployError> {
        match &self.bytes {
            Some(b) => Ok(std::borrow::Cow::Borrowed(b)),
            None => {
                let b = std::fs::read(&self.path).map_err(|e| {
                    deploy_error(
                        server,
                        format!("cannot read the agent binary {}: {e}", self.path.display()),
                    )
                })?;
                if hex(&Sha256::digest(&b)) != self.sha256 {
                    return Err(deploy_error(
                        server,
                        format!(
                            "the agent binary {} changed while connecting; connect again",
                            self.path.display()
                        ),
                    ));
                }
                Ok(std::borrow::Cow::Owned(b))
            }
        }
    }

    /// The crate version this client claims and the start of the checksum.
    pub(super) fn version(&self, claimed: &str) -> String {
        format!("{claimed}-{}", &self.sha256[..16])
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const UPLOAD: &str = r#"
set -u
dir="$HOME/.local/share/gpubook/bin"
final="$dir/gpubook-agent-$1"
# What an interrupted upload left behind.
find "$dir" -maxdepth 1 -name '.upload-*' -mmin +10 -exec rm -f {} + 2>/dev/null
tmp="$dir/.upload-$1-$$"
umask 022
if ! cat > "$tmp"; then rm -f "$tmp"; echo "writing $tmp failed (disk full?)" >&2; exit 3; fi
sum=$(sha256sum "$tmp" | cut -d' ' -f1)
if [ "$sum" != "$2" ]; then rm -f "$tmp"; echo "the uploaded agent's checksum is $sum, not $2 (the transfer was damaged)" >&2; exit 4; fi
chmod 755 "$tmp"
if [ -e "$final" ] && [ ! -f "$final" ]; then rm -f "$tmp"; echo "$final exists and is not a file gpubook made: remove it" >&2; exit 5; fi
if ! mv -f "$tmp" "$final"; then rm -f "$tmp"; echo "cannot replace $final: remove it" >&2; exit 5; fi
"#;

pub(super) async fn upload(
    session: &Session,
    local: &LocalAgent,
    version: &str,
) -> Result<(), DeployError> {
    let out = session
        .run(
            &sh(UPLOAD, &[version, &local.sha256]),
            &local.bytes(session.server())?,
        )
        .await?;
    if !out.success() {
        return Err(deploy_error(
            session.server(),
            format!(
                "uploading the gpubook agent ({}) failed: {}. Connecting again retries",
                local.path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}
