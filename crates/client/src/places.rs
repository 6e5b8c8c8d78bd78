//! Where gpubook keeps a person's files, by their platform's conventions: the XDG base
//! directories on Unix (Linux, and macOS as command-line tools there do), the known folders on
//! Windows (`%APPDATA%` for settings, `%LOCALAPPDATA%` for state and data), through `dirs`.
//!
//! Each function returns the base directory; callers add `gpubook`. `None` when there is no
//! home to put it in.

use std::path::PathBuf;

/// `$var` when it is set to an absolute path (the XDG spec ignores relative ones).
#[cfg(unix)]
fn xdg(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// The person's home: `$HOME` on Unix; the profile folder on Windows (`$HOME` first, which
/// Git's and MSYS's shells set).
pub fn home() -> Option<PathBuf> {
    let env = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    #[cfg(windows)]
    let env = env.or_else(dirs::home_dir);
    env
}

/// Settings: `$XDG_CONFIG_HOME`, else `~/.config`; `%APPDATA%` on Windows.
pub fn config_home() -> Option<PathBuf> {
    #[cfg(unix)]
    return xdg("XDG_CONFIG_HOME").or_else(|| home().map(|h| h.join(".config")));
    #[cfg(windows)]
    return dirs::config_dir();
}

/// What is remembered between runs: `$XDG_STATE_HOME`, else `~/.local/state`;
/// `%LOCALAPPDATA%` on Windows.
pub fn state_home() -> Option<PathBuf> {
    #[cfg(unix)]
    return xdg("XDG_STATE_HOME").or_else(|| home().map(|h| h.join(".local/state")));
    #[cfg(windows)]
    return dirs::data_local_dir();
}

/// The app's data: `$XDG_DATA_HOME`, else `~/.local/share`; `%LOCALAPPDATA%` on Windows.
pub fn data_home() -> Option<PathBuf> {
    #[cfg(unix)]
    return xdg("XDG_DATA_HOME").or_else(|| home().map(|h| h.join(".local/share")));
    #[cfg(windows)]
    return dirs::data_local_dir();
}

/// Where downloads go: `$XDG_DOWNLOAD_DIR`, else `~/Downloads`; the Downloads known folder on
/// Windows.
pub fn download_dir() -> Option<PathBuf> {
    #[cfg(unix)]
    return xdg("XDG_DOWNLOAD_DIR").or_else(|| home().map(|h| h.join("Downloads")));
    #[cfg(windows)]
    return dirs::download_dir().or_else(|| home().map(|h| h.join("Downloads")));
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn a_relative_xdg_variable_is_ignored_as_the_spec_says() {
        // Only the pure part: the environment is the process's, so no variable is set here.
        assert_eq!(super::xdg("GPUBOOK_SURELY_UNSET_VARIABLE"), None);
        assert!(std::path::Path::new("rel").is_relative());
    }
}
