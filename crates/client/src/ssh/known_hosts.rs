//! known_hosts, read line by line as OpenSSH writes it: `names keytype base64 [comment]`,
//! names plain, with wildcards, negated or hashed (`|1|salt|hmac-sha1`), `[host]:port` off
//! port 22, `@revoked` and `@cert-authority` markers. A line that cannot be read is skipped.

use super::config::host_matches;
use super::{SshError, SshHost};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::PathBuf;

/// A server's public host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// Its type as the key blob names it, e.g. `ssh-ed25519`.
    pub key_type: String,
    /// The key blob (the SSH wire format).
    pub blob: Vec<u8>,
}

impl HostKey {
    /// Reads the type from the blob itself (its first string).
    pub fn from_blob(blob: &[u8]) -> Self {
        let key_type = blob
            .get(..4)
            .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
            .and_then(|n| blob.get(4..4 + n))
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .unwrap_or_else(|| "unknown".into());
        Self {
            key_type,
            blob: blob.to_vec(),
        }
    }

    /// `SHA256:...` as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.blob)
    }

    /// `type base64` as in known_hosts and .pub files.
    pub fn openssh(&self) -> String {
        format!("{} {}", self.key_type, STANDARD.encode(&self.blob))
    }
}

/// The SHA256 fingerprint of a key blob, as OpenSSH prints it: `SHA256:` and unpadded base64.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// What known_hosts says about a host's key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The key is there, and no file revokes it.
    Known,
    /// Nothing about this host.
    Unknown,
    /// Another key is there, or this one is revoked ([`revoked`] tells which): file and line.
    Changed(PathBuf, usize),
}

/// The known_hosts files of `target`: the person's (UserKnownHostsFile), then the system's
/// (GlobalKnownHostsFile).
fn files(target: &SshHost) -> impl Iterator<Item = &PathBuf> {
    target
        .user_known_hosts
        .iter()
        .chain(target.global_known_hosts.iter())
}

/// Where `key` is marked `@revoked` for `target`, in any of its known_hosts files: file and
/// line (1-based) of the first such line. A revoked key is never accepted, whatever any file
/// says besides, as OpenSSH does.
pub(crate) fn revoked(target: &SshHost, key: &HostKey) -> Option<(PathBuf, usize)> {
    let name = target.known_hosts_name();
    for file in files(target) {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let Some(entry) = parse_line(line) else {
                continue;
            };
            if entry.marker == Some("@revoked")
                && entry.blob == key.blob
                && names_match(entry.names, &name)
            {
                return Some((file.clone(), i + 1));
            }
        }
    }
    None
}

/// Checks `key` for `target` against its known_hosts files. A key revoked in any file is
/// refused ([`Verdict::Changed`] at the revoking line) before any file is asked whether it
/// knows the key, so a plain entry elsewhere cannot trust it again.
pub(crate) fn check(target: &SshHost, key: &HostKey) -> Verdict {
    if let Some((file, line)) = revoked(target, key) {
        return Verdict::Changed(file, line);
    }
    let name = target.known_hosts_name();
    let mut other: Option<(PathBuf, usize)> = None;
    for file in files(target) {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let Some(entry) = parse_line(line) else {
                continue;
            };
            // Revoked lines were read above; a CA's key is not a host key.
            if entry.marker.is_some() || !names_match(entry.names, &name) {
                continue;
            }
            if entry.blob == key.blob {
                return Verdict::Known;
            }
            // Another key of this host. OpenSSH refuses a changed key of the same type; a key
            // of another type is refused as well: gpubook asks the server for the known types
            // first, so a server that offers another one is suspect.
            other.get_or_insert((file.clone(), i + 1));
        }
    }
    match other {
        Some((f, l)) => Verdict::Changed(f, l),
        None => Verdict::Unknown,
    }
}

/// The key types known_hosts holds for `target`, to ask the server for them first.
pub(crate) fn known_types(target: &SshHost) -> Vec<String> {
    let name = target.known_hosts_name();
    let mut types = Vec::new();
    for file in files(target) {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines() {
            if let Some(e) = parse_line(line) {
                if e.marker.is_none()
                    && names_match(e.names, &name)
                    && !types.contains(&e.key_type.to_string())
                {
                    types.push(e.key_type.to_string());
                }
            }
        }
    }
    types
}

/// Appends `key` for `target` to the first of its known_hosts files, in OpenSSH's format.
pub(crate) fn append(target: &SshHost, key: &HostKey) -> Result<PathBuf, SshError> {
    let file = target
        .user_known_hosts
        .first()
        .cloned()
        .unwrap_or_else(|| super::config::process_home().join(".ssh/known_hosts"));
    let fail = |e: std::io::Error| SshError::Config {
        server: target.spec.clone(),
        detail: format!(
            "cannot add the host key to {}: {e}. Add this line yourself: {} {}",
            file.display(),
            target.known_hosts_name(),
            key.openssh()
        ),
    };
    if let Some(dir) = file.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(fail)?;
            let _ = crate::private_files::restrict_dir(dir);
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .map_err(fail)?;
    // A file that does not end with a newline would glue our line to its last one.
    let ends_ok = std::fs::read(&file)
        .map(|b| b.is_empty() || b.ends_with(b"\n"))
        .unwrap_or(true);
    let line = format!(
        "{}{} {}\n",
        if ends_ok { "" } else { "\n" },
        target.known_hosts_name(),
        key.openssh()
    );
    f.write_all(line.as_bytes()).map_err(fail)?;
    Ok(file)
}

/// One readable known_hosts line.
struct Entry<'a> {
    /// `@revoked` or `@cert-authority`.
    marker: Option<&'a str>,
    /// The comma-separated names.
    names: &'a str,
    /// The key type.
    key_type: &'a str,
    /// The decoded key.
    blob: Vec<u8>,
}

fn parse_line(line: &str) -> Option<Entry<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut parts = line.split_whitespace();
    let mut first = parts.next()?;
    let marker = if first.starts_with('@') {
        let m = first;
        first = parts.next()?;
        Some(m)
    } else {
        None
    };
    let key_type = parts.next()?;
    let blob = STANDARD.decode(parts.next()?).ok()?;
    // The blob names its own type; a line whose two types differ is damaged.
    if HostKey::from_blob(&blob).key_type != key_type {
        return None;
    }
    Some(Entry {
        marker,
        names: first,
        key_type,
        blob,
    })
}

fn names_match(names: &str, name: &str) -> bool {
    if let Some(hashed) = names.strip_prefix("|1|") {
        return hashed_match(hashed, name);
    }
    // Patterns, as in Host lines; `[host]:port` matched as a whole.
    host_matches(names, name)
}

fn hashed_match(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(&(body.len() as u32).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    fn target(dir: &std::path::Path, port: u16) -> SshHost {
        SshHost {
            spec: "lab1".into(),
            host: "lab1.example.org".into(),
            port,
            user: "alice".into(),
            identity_files: vec![],
            identities_only: false,
            proxy_jump: vec![],
            user_known_hosts: vec![dir.join("known_hosts")],
            global_known_hosts: vec![dir.join("global")],
            host_key_alias: None,
            connect_timeout: None,
            server_alive_interval: None,
            identity_agent: None,
            use_agent: true,
        }
    }

    #[test]
    fn plain_hashed_changed_and_broken_lines() {
        let dir = tempfile::tempdir().unwrap();
        let ours = HostKey::from_blob(&blob("ssh-ed25519", &[1; 32]));
        let theirs = HostKey::from_blob(&blob("ssh-ed25519", &[2; 32]));
        assert_eq!(ours.key_type, "ssh-ed25519");
        let t = target(dir.path(), 2222);
        assert_eq!(check(&t, &ours), Verdict::Unknown);
        // A hashed entry for [lab1.example.org]:2222.
        let salt = [7u8; 20];
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"[lab1.example.org]:2222");
        let hash = mac.finalize().into_bytes();
        std::fs::write(
            dir.path().join("known_hosts"),
            format!(
                "garbage line\nlab1.example.org {}\n|1|{}|{} {}\n",
                theirs.openssh(),
                STANDARD.encode(salt),
                STANDARD.encode(hash),
                ours.openssh()
            ),
        )
        .unwrap();
        // Port 22's entry (line 2) is another name; the hashed one matches.
        assert_eq!(check(&t, &ours), Verdict::Known);
        assert_eq!(
            check(&t, &theirs),
            Verdict::Changed(dir.path().join("known_hosts"), 3)
        );
        let t22 = target(dir.path(), 22);
        assert_eq!(check(&t22, &theirs), Verdict::Known);
        assert_eq!(
            check(&t22, &ours),
            Verdict::Changed(dir.path().join("known_hosts"), 2)
        );
    }

    #[test]
    fn a_key_revoked_in_any_file_is_refused_even_where_another_trusts_it() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path(), 22);
        let key = HostKey::from_blob(&blob("ssh-ed25519", &[4; 32]));
        let other = HostKey::from_blob(&blob("ssh-ed25519", &[5; 32]));
        let user = dir.path().join("known_hosts");
        let global = dir.path().join("global");

        // Trusted by the person, revoked by the admin (a later file): revoked wins.
        std::fs::write(&user, format!("lab1.example.org {}\n", key.openssh())).unwrap();
        std::fs::write(
            &global,
            format!(
                "# revoked after the break-in\nlab1.example.org {}\n@revoked * {}\n",
                other.openssh(),
                key.openssh()
            ),
        )
        .unwrap();
        assert_eq!(revoked(&t, &key), Some((global.clone(), 3)));
        assert_eq!(check(&t, &key), Verdict::Changed(global.clone(), 3));
        // The other key is not revoked, and the admin's file knows it.
        assert_eq!(revoked(&t, &other), None);
        assert_eq!(check(&t, &other), Verdict::Known);

        // Revoked by the person, trusted by the admin: still refused, at the person's line.
        std::fs::write(
            &user,
            format!("@revoked lab1.example.org {}\n", key.openssh()),
        )
        .unwrap();
        std::fs::write(&global, format!("lab1.example.org {}\n", key.openssh())).unwrap();
        assert_eq!(check(&t, &key), Verdict::Changed(user.clone(), 1));

        // Revoked and trusted in the same file, the plain line first: refused.
        std::fs::write(
            &user,
            format!(
                "lab1.example.org {}\n@revoked lab1.example.org {}\n",
                key.openssh(),
                key.openssh()
            ),
        )
        .unwrap();
        std::fs::remove_file(&global).unwrap();
        assert_eq!(check(&t, &key), Verdict::Changed(user.clone(), 2));

        // A revocation for another host does not touch this one.
        std::fs::write(
            &user,
            format!(
                "lab1.example.org {}\n@revoked lab2.example.org {}\n",
                key.openssh(),
                key.openssh()
            ),
        )
        .unwrap();
        assert_eq!(revoked(&t, &key), None);
        assert_eq!(check(&t, &key), Verdict::Known);
        // Revoked keys are not asked for first.
        assert_eq!(known_types(&t), ["ssh-ed25519"]);
    }

    #[test]
    fn an_accepted_key_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(&dir.path().join("new/.ssh"), 2222);
        let k = HostKey::from_blob(&blob("ssh-ed25519", &[3; 32]));
        append(&t, &k).unwrap();
        assert_eq!(check(&t, &k), Verdict::Known);
        let text = std::fs::read_to_string(&t.user_known_hosts[0]).unwrap();
        assert!(
            text.starts_with("[lab1.example.org]:2222 ssh-ed25519 AAAA"),
            "{text}"
        );
        assert!(fingerprint(&k.blob).starts_with("SHA256:"));
        assert!(!fingerprint(&k.blob).ends_with('='));
    }
}
