//! A helper process run as a booking's owner: the same switch of groups, gid and uid as a job
//! (see `spawn.rs`), for the copies before and after a job (stage-in, save), so that the root
//! agent never reads or writes the owner's files itself: what the owner may not read is
//! refused to the copy as it would be in their own shell.

use crate::identity::Account;
use std::path::Path;

/// A command that runs `program` as `account` (when `switch`: the agent is root and the
/// account is someone else), with a clean environment holding only their identity, in their
/// home directory, with the default file mode mask. Killed if dropped.
pub fn owner_command(
    program: &Path,
    owner: &str,
    account: &Account,
    switch: bool,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear()
        .env("HOME", &account.home)
        .env("USER", owner)
        .env("LOGNAME", owner)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let Account {
        uid, gid, groups, ..
    } = account.clone();
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls on values prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(0o022);
            // Groups, then gid, then uid: after setuid nothing else may be changed.
            if switch
                && (libc::setgroups(groups.len() as _, groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}
