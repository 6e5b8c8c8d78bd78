//! The agent's state directory and socket: permissions tightened, one agent per directory, the
//! socket bound with the mode its sharing asks for.

use anyhow::Context as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use tokio::net::{UnixListener, UnixStream};

/// Makes the state directory 0700 and the files in it 0600 (the job logs' directory keeps
/// 0711 and each log its owner's 0600), saying so in the log where they were looser: bookings
/// hold other people's commands and environment.
pub(super) fn tighten_state_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let tighten = |path: &std::path::Path, mode: u32| -> anyhow::Result<()> {
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("cannot look at {}", path.display()))?;
        if meta.file_type().is_symlink() {
            anyhow::bail!(
                "{} is a symbolic link; the agent's state must be plain files",
                path.display()
            );
        }
        let old = meta.permissions().mode() & 0o7777;
        if old & !mode != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(old & mode))
                .with_context(|| format!("cannot make {} private", path.display()))?;
            eprintln!(
                "gpubook-agent: {} was mode {old:04o}; made it {:04o} (only the agent may read \
                 its state)",
                path.display(),
                old & mode
            );
        }
        Ok(())
    };
    tighten(dir, 0o700)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            if entry.file_name() == "logs" {
                tighten(&path, 0o711)?;
            }
            continue;
        }
        tighten(&path, 0o600)?;
    }
    Ok(())
}

pub(super) fn lock_state_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("agent.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        anyhow::bail!(
            "another gpubook-agent is running with the state directory {}",
            dir.display()
        );
    }
    Ok(f)
}

pub(super) async fn bind_socket(
    path: &std::path::Path,
    shared: bool,
) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create socket directory {}", dir.display()))?;
            let mode = if shared { 0o755 } else { 0o700 };
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!("another gpubook-agent is listening on {}", path.display());
        }
        // A socket left by an agent that died: nobody listens on it.
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    // Anyone may connect to a shared socket: who they are comes from the kernel, not from
    // what they send.
    let mode = if shared { 0o666 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}
