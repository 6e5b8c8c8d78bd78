//! Where the app keeps its files: the XDG base directories on Unix, the known folders on
//! Windows ([`gpubook_client::places`]); the temporary directory when there is no home.

use gpubook_client::places;
use std::path::PathBuf;

/// `$XDG_CONFIG_HOME/gpubook` (`%APPDATA%\gpubook` on Windows): settings.
pub fn config_dir() -> PathBuf {
    places::config_home()
        .unwrap_or_else(std::env::temp_dir)
        .join("gpubook")
}

/// `$XDG_DATA_HOME/gpubook` (`%LOCALAPPDATA%\gpubook` on Windows): what the app remembers,
/// the local agent's state.
pub fn data_dir() -> PathBuf {
    places::data_home()
        .unwrap_or_else(std::env::temp_dir)
        .join("gpubook")
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash never leaves
/// half a file.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
