//! Who a uid is: user name and groups, from the system's user database.

use std::ffi::{CStr, CString};

/// A person as the system knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Their uid (from the socket's peer credentials).
    pub uid: u32,
    /// Their user name, or "uid:N" when the uid has no entry.
    pub user: String,
    /// Names of their Unix groups, primary included.
    pub groups: Vec<String>,
}

/// Looks `uid` up in the user database.
pub fn lookup(uid: u32) -> Identity {
    let Some((user, gid)) = passwd_entry(uid) else {
        return Identity {
            uid,
            user: format!("uid:{uid}"),
            groups: Vec::new(),
        };
    };
    let groups = group_ids(&user, gid)
        .into_iter()
        .filter_map(group_name)
        .collect();
    Identity { uid, user, groups }
}

/// The user name of `uid`, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    passwd_entry(uid).map(|(name, _)| name)
}

fn passwd_entry(uid: u32) -> Option<(String, u32)> {
    // SAFETY: the arguments are the ones getpwuid_r documents, passed through unchanged.
    let found = read_passwd(|p, b, l, r| unsafe { libc::getpwuid_r(uid, p, b, l, r) })?;
    Some((found.name, found.gid))
}

/// What this module reads of a passwd entry, copied out of libc's buffer.
struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
}

/// Calls a reentrant passwd lookup (`getpwuid_r`, `getpwnam_r`) with a buffer that grows
/// until the entry fits, and copies the entry out.
fn read_passwd(
    call: impl Fn(
        *mut libc::passwd,
        *mut libc::c_char,
        libc::size_t,
        *mut *mut libc::passwd,
    ) -> libc::c_int,
) -> Option<Passwd> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: passwd is plain data; all-zero is a valid (empty) value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    loop {
        let rc = call(&mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result);
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        let text = |p: *const libc::c_char| {
            // SAFETY: on success the entry's strings are NUL-terminated inside `buf`.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        };
        return Some(Passwd {
            name: text(pwd.pw_name),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            home: text(pwd.pw_dir),
            shell: text(pwd.pw_shell),
        });
    }
}

/// A user's entry in the user database, as a job needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Their uid.
    pub uid: u32,
    /// Their primary gid.
    pub gid: u32,
    /// Their home directory.
    pub home: String,
    /// Their login shell.
    pub shell: String,
    /// All their group ids, primary included.
    pub groups: Vec<u32>,
}

/// Looks a user up by name.
pub fn account(name: &str) -> Option<Account> {
    let cname = CString::new(name).ok()?;
    // SAFETY: the arguments are the ones getpwnam_r documents; `cname` outlives the call.
    let p = read_passwd(|p, b, l, r| unsafe { libc::getpwnam_r(cname.as_ptr(), p, b, l, r) })?;
    Some(Account {
        uid: p.uid,
        gid: p.gid,
        home: p.home,
        shell: p.shell,
        groups: group_ids(name, p.gid),
    })
}

fn group_ids(user: &str, gid: u32) -> Vec<u32> {
    let Ok(cuser) = CString::new(user) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let asked = n;
        // SAFETY: `groups` has room for `n` entries; getgrouplist updates `n`.
        let rc = unsafe { libc::getgrouplist(cuser.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n as usize);
            return groups;
        }
        if n <= asked {
            n = asked * 2;
        }
        if n > 65_536 {
            return vec![gid];
        }
    }
}

fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    loop {
        // SAFETY: every pointer refers to a live local of the right size.
        let rc = unsafe {
            libc::getgrgid_r(
                gid,
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success gr_name points to a NUL-terminated string inside `buf`.
        let name = unsafe { CStr::from_ptr(grp.gr_name) };
        return Some(name.to_string_lossy().into_owned());
    }
}

/// The uid this process runs as.
pub fn current_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_root() {
        let me = lookup(0);
        assert_eq!(me.user, "root");
        assert!(me.groups.contains(&"root".to_string()));
        assert_eq!(lookup(4_000_000_000).user, "uid:4000000000");
    }
}
