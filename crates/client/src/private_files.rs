//! Files and directories for their owner's eyes only, on every platform: mode 0700/0600 on
//! Unix; on Windows the person's profile folders already allow only them (and the system),
//! and what is made inside inherits that. And the lock that keeps two processes from using
//! one state file at once: `flock` on Unix, `LockFileEx` on Windows.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Makes `dir` and its parents, the new ones readable by their owner only.
pub(crate) fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Options that make a new file readable and writable by its owner only.
pub(crate) fn options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

/// Makes an existing directory its owner's only (mode 0700); nothing to do on Windows.
pub(crate) fn restrict_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    return std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    #[cfg(windows)]
    {
        let _ = dir;
        Ok(())
    }
}

/// Takes an exclusive lock on `f` without waiting: `Ok(false)` when another holds it. The lock
/// goes with the file's last handle.
pub(crate) fn try_lock(f: &File) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(false);
        }
        Err(e)
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::AsRawHandle;
        use windows_sys::Win32::Foundation::ERROR_LOCK_VIOLATION;
        use windows_sys::Win32::Storage::FileSystem::{
            LockFileEx, LOCKFILE_EXCLUSIVE_LOCK, LOCKFILE_FAIL_IMMEDIATELY,
        };
        // SAFETY: a zeroed OVERLAPPED (offset 0) and a handle we own, both live for the call.
        let ok = unsafe {
            let mut ov: windows_sys::Win32::System::IO::OVERLAPPED = std::mem::zeroed();
            LockFileEx(
                f.as_raw_handle() as _,
                LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY,
                0,
                u32::MAX,
                u32::MAX,
                &mut ov,
            )
        };
        if ok != 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(ERROR_LOCK_VIOLATION as i32) {
            return Ok(false);
        }
        Err(e)
    }
}
