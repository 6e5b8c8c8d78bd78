//! The local account as the passwd database has it: home and user name. On Windows, where
//! there is no passwd database, the profile folder and `%USERNAME%` stand in for it.

use std::path::PathBuf;

/// `$HOME`, else the passwd entry's home.
pub(crate) fn process_home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(passwd_home)
        .unwrap_or_else(|| PathBuf::from("/"))
}

#[cfg(unix)]
fn passwd_field<T>(f: impl FnOnce(&libc::passwd) -> T) -> Option<T> {
    let mut buf = vec![0u8; 16384];
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the buffer outlives the use of `pw`.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then(|| f(&pw))
}

#[cfg(unix)]
fn cstr(p: *const libc::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: getpwuid_r filled it with a NUL-terminated string inside the live buffer.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

/// The account's own home (passwd's; the profile folder on Windows), whatever `$HOME` says.
#[cfg(unix)]
pub(crate) fn passwd_home() -> Option<PathBuf> {
    passwd_field(|pw| PathBuf::from(cstr(pw.pw_dir)))
}

/// The account's own home (passwd's; the profile folder on Windows), whatever `$HOME` says.
#[cfg(windows)]
pub(crate) fn passwd_home() -> Option<PathBuf> {
    dirs::home_dir()
}

/// The local user's name (the default remote user).
#[cfg(unix)]
pub(crate) fn local_user() -> String {
    passwd_field(|pw| cstr(pw.pw_name))
        .filter(|n| !n.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".into())
}

/// The local user's name (the default remote user): `%USERNAME%`, as OpenSSH for Windows has
/// it.
#[cfg(windows)]
pub(crate) fn local_user() -> String {
    std::env::var("USERNAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "user".into())
}
