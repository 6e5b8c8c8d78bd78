//! Where agents put their sockets, so clients find them without being told, and the checks
//! that keep another local user from putting their own socket there first.
//!
//! A personal agent's socket lives in `$XDG_RUNTIME_DIR/gpubook` (inside the person's own
//! runtime directory, mode 0700, made by the login manager) or, without one, in
//! `/tmp/gpubook-UID`. Anyone may create that name in `/tmp`, so it is used only when it is a
//! real directory owned by UID with mode 0700 ([`checked_runtime_dir`] makes it so when it is
//! absent); a client also checks who serves the socket it reached ([`trusted_agent_uid`]).
//!
//! Agents and their sockets exist on Unix only: the checks that read Unix owners and modes are
//! `cfg(unix)`; the names are everywhere (a client elsewhere reaches agents over SSH).

#[cfg(unix)]
use std::io;
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
#[cfg(unix)]
use std::path::Path;
use std::path::PathBuf;

/// The system agent's socket (installed by an admin; jobs run as their owners).
pub const SYSTEM_SOCKET: &str = "/run/gpubook/agent.sock";

/// The name of the fallback directories in `/tmp`: `gpubook-UID`.
const TMP_PREFIX: &str = "/tmp/gpubook-";

/// A personal agent's socket: `$XDG_RUNTIME_DIR/gpubook/agent.sock`, or
/// `/tmp/gpubook-UID/agent.sock` where there is no runtime directory. Not checked: an agent
/// uses [`checked_runtime_dir`], a client checks whoever answers.
pub fn personal_socket(uid: u32) -> PathBuf {
    runtime_dir(uid).join("agent.sock")
}

/// The directory of a personal agent's socket: `$XDG_RUNTIME_DIR/gpubook`, or
/// [`tmp_runtime_dir`] where there is no runtime directory. Not checked.
pub fn runtime_dir(uid: u32) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("gpubook"),
        None => tmp_runtime_dir(uid),
    }
}

/// The fallback directory `/tmp/gpubook-UID`, which any local user could create first.
pub fn tmp_runtime_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("{TMP_PREFIX}{uid}"))
}

#[cfg(unix)]
/// [`runtime_dir`], safe to put `uid`'s socket in. The `/tmp/gpubook-UID` fallback is made
/// (mode 0700) when absent, and refused when it is not a directory owned by `uid` with mode
/// 0700: another local user could have made it to catch the socket. `$XDG_RUNTIME_DIR/gpubook`
/// is returned as it is (the runtime directory is the person's own); the agent makes it.
pub fn checked_runtime_dir(uid: u32) -> io::Result<PathBuf> {
    let dir = runtime_dir(uid);
    if dir != tmp_runtime_dir(uid) {
        return Ok(dir);
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        // Ours now; the umask may have taken bits away, so say exactly what it is.
        Ok(()) => std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    check_private_dir(&dir, uid)?;
    Ok(dir)
}

#[cfg(unix)]
/// Checks that `dir` is a directory (not a link to one) owned by `uid` with mode 0700, so no
/// one else can put a socket in it. The error, of kind `PermissionDenied`, says what is wrong
/// and what to do.
pub fn check_private_dir(dir: &Path, uid: u32) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    let refuse = |what: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} {what}; it must be a directory of uid {uid} with mode 0700, or another user \
                 could catch the gpubook agent's socket. Remove it (or set XDG_RUNTIME_DIR) and \
                 start the agent again",
                dir.display()
            ),
        ))
    };
    if meta.file_type().is_symlink() {
        return refuse("is a symbolic link".into());
    }
    if !meta.is_dir() {
        return refuse("is not a directory".into());
    }
    if meta.uid() != uid {
        return refuse(format!("belongs to uid {}", meta.uid()));
    }
    let mode = meta.mode() & 0o777;
    if mode != 0o700 {
        return refuse(format!("has mode {mode:03o}"));
    }
    Ok(())
}

#[cfg(unix)]
/// When `socket` lies in a `/tmp/gpubook-UID` fallback directory: [`check_private_dir`] of
/// that directory for that UID. A socket anywhere else is left alone (its directory is the
/// admin's, the person's runtime directory, or one they named).
pub fn check_socket_dir(socket: &Path) -> io::Result<()> {
    let Some(dir) = socket.parent() else {
        return Ok(());
    };
    let uid = dir
        .to_str()
        .and_then(|d| d.strip_prefix(TMP_PREFIX))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u32>().ok());
    match uid {
        Some(uid) => check_private_dir(dir, uid),
        None => Ok(()),
    }
}

/// Whether an agent served by `agent_uid` may be talked to by `me`: root's (the system agent)
/// or one's own. Read the uid from the connected socket (`SO_PEERCRED`), which a process that
/// listens in the agent's place cannot fake, not from the socket file's owner.
pub fn trusted_agent_uid(agent_uid: u32, me: u32) -> bool {
    agent_uid == 0 || agent_uid == me
}

/// `$GPUBOOK_SOCKET` when set: the socket both the agent and the clients use, if given.
pub fn socket_from_env() -> Option<PathBuf> {
    std::env::var_os("GPUBOOK_SOCKET")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn me() -> u32 {
        std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap()
    }

    fn mkdir(path: &Path, mode: u32) {
        std::fs::create_dir(path).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn refused(r: io::Result<()>, why: &str) {
        let e = r.expect_err(why);
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains(why), "{e}");
    }

    #[test]
    fn only_a_real_directory_of_the_uid_with_mode_0700_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let me = me();
        let ok = tmp.path().join("ok");
        mkdir(&ok, 0o700);
        check_private_dir(&ok, me).unwrap();

        let loose = tmp.path().join("loose");
        mkdir(&loose, 0o755);
        refused(check_private_dir(&loose, me), "has mode 755");
        let sticky = tmp.path().join("world");
        mkdir(&sticky, 0o777);
        refused(check_private_dir(&sticky, me), "has mode 777");

        // Someone else's: another uid than the owner's.
        refused(
            check_private_dir(&ok, me + 1),
            &format!("belongs to uid {me}"),
        );

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        refused(check_private_dir(&link, me), "symbolic link");
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        refused(check_private_dir(&file, me), "not a directory");
        assert_eq!(
            check_private_dir(&tmp.path().join("absent"), me)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_socket_in_a_tmp_fallback_is_checked_for_the_uid_in_its_name() {
        check_socket_dir(Path::new("/run/gpubook/agent.sock")).unwrap();
        check_socket_dir(Path::new("/tmp/elsewhere/agent.sock")).unwrap();
        check_socket_dir(Path::new("/tmp/gpubook-x1/agent.sock")).unwrap();
        // A uid no one has, so no real agent's directory is touched.
        let uid = u32::MAX - std::process::id();
        let dir = tmp_runtime_dir(uid);
        let socket = dir.join("agent.sock");
        assert_eq!(
            check_socket_dir(&socket).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        // Made by someone else (this test's user) for that uid: refused.
        mkdir(&dir, 0o700);
        let r = check_socket_dir(&socket);
        std::fs::remove_dir(&dir).unwrap();
        refused(r, &format!("belongs to uid {}", me()));
    }

    #[test]
    fn the_system_agent_and_ones_own_are_trusted_and_no_one_else() {
        assert!(trusted_agent_uid(0, 1000));
        assert!(trusted_agent_uid(1000, 1000));
        assert!(trusted_agent_uid(0, 0));
        assert!(!trusted_agent_uid(1001, 1000));
        assert!(!trusted_agent_uid(1000, 0));
    }
}
