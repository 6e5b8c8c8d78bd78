//! Logging in, in the order `ssh` uses: the ssh-agent's keys (only those IdentityFile names
//! when IdentitiesOnly is set), key files (a passphrase from the OS keyring, else asked for and,
//! with consent, stored there), keyboard-interactive (one-time codes), password (the keyring,
//! else asked for).
//!
//! Keyring entries: service `gpubook-ssh`, account `key:PATH` for a key's passphrase and
//! `password:USER@HOST:PORT` for a password. Secrets stay in [`Secret`]s, whose Debug is
//! redacted, and are never logged.

use super::{Options, SshError, SshHost};
use crate::secrets::Secret;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::path::{Path, PathBuf};

/// The keyring service of SSH secrets.
pub const KEYRING_SERVICE: &str = "gpubook-ssh";

/// How many times the person is asked for a passphrase or password.
const TRIES: usize = 3;

/// The keyring account of a key file's passphrase.
pub fn passphrase_account(key: &Path) -> String {
    format!("key:{}", key.display())
}

/// The keyring account of a password.
pub fn password_account(t: &SshHost) -> String {
    format!("password:{}@{}:{}", t.user, t.host, t.port)
}

fn keyring_get(account: &str) -> Option<Secret> {
    keyring::Entry::new(KEYRING_SERVICE, account)
        .ok()?
        .get_password()
        .ok()
        .map(Secret::new)
}

fn keyring_set(account: &str, secret: &Secret) {
    if let Ok(e) = keyring::Entry::new(KEYRING_SERVICE, account) {
        let _ = e.set_password(secret.expose());
    }
}

fn keyring_forget(account: &str) {
    if let Ok(e) = keyring::Entry::new(KEYRING_SERVICE, account) {
        let _ = e.delete_credential();
    }
}

/// Logs in as `t.user`, or says what was tried.
pub(crate) fn authenticate(
    sess: &ssh2::Session,
    t: &SshHost,
    opts: &Options,
) -> Result<(), SshError> {
    let user = t.user.as_str();
    if let Some(p) = &opts.prompt {
        p.login_starts(&t.spec);
    }
    let methods = match sess.auth_methods(user) {
        Ok(m) => m.to_string(),
        Err(_) if sess.authenticated() => return Ok(()),
        Err(e) => return Err(super::session::phase_error(t, "asking how to log in", e)),
    };
    let mut tried: Vec<String> = Vec::new();
    let mut passphrase_error: Option<SshError> = None;

    if methods.contains("publickey") {
        if agent(sess, t, opts, &mut tried) {
            return Ok(());
        }
        for key in t.identity_files.iter().filter(|k| k.is_file()) {
            match key_file(sess, t, opts, key) {
                Ok(()) => return Ok(()),
                Err(Some(e)) => {
                    tried.push(format!("key {} (passphrase)", key.display()));
                    passphrase_error.get_or_insert(e);
                }
                Err(None) => tried.push(format!("key {}", key.display())),
            }
        }
    }
    if methods.contains("keyboard-interactive") {
        let password = opts
            .keyring
            .then(|| keyring_get(&password_account(t)))
            .flatten();
        if opts.prompt.is_some() || password.is_some() {
            let mut kbd = Kbd {
                opts,
                server: &t.spec,
                password,
                asked: false,
            };
            if sess.userauth_keyboard_interactive(user, &mut kbd).is_ok() && sess.authenticated() {
                return Ok(());
            }
            tried.push("keyboard-interactive".into());
        }
    }
    if methods.contains("password") && password(sess, t, opts, &mut tried) {
        return Ok(());
    }
    if let Some(e) = passphrase_error {
        return Err(e);
    }
    if tried.is_empty() {
        tried.push(format!("nothing (the server offers: {methods})"));
    }
    Err(SshError::Auth {
        server: t.spec.clone(),
        user: user.to_string(),
        tried,
    })
}

/// The public key blobs of the IdentityFile keys (from their .pub files).
fn identity_blobs(t: &SshHost) -> Vec<Vec<u8>> {
    t.identity_files
        .iter()
        .filter_map(|k| std::fs::read_to_string(pub_file(k)).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|b| STANDARD.decode(b).ok())
        })
        .collect()
}

fn pub_file(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Tries the ssh-agent's keys.
fn agent(sess: &ssh2::Session, t: &SshHost, opts: &Options, tried: &mut Vec<String>) -> bool {
    if !t.use_agent {
        return false;
    }
    let Some(socket) = t.identity_agent.clone().or_else(|| opts.env.agent_socket()) else {
        return false;
    };
    let Ok(mut agent) = sess.agent() else {
        return false;
    };
    if agent.set_identity_path(&socket).is_err() || agent.connect().is_err() {
        tried.push(format!("ssh-agent (not reachable at {})", socket.display()));
        return false;
    }
    let _ = agent.list_identities();
    let mut ids = agent.identities().unwrap_or_default();
    if t.identities_only {
        let allowed = identity_blobs(t);
        ids.retain(|id| allowed.iter().any(|b| b.as_slice() == id.blob()));
    }
    let n = ids.len();
    for id in &ids {
        if agent.userauth(&t.user, id).is_ok() && sess.authenticated() {
            let _ = agent.disconnect();
            return true;
        }
    }
    let _ = agent.disconnect();
    tried.push(format!(
        "ssh-agent ({n} key{}{})",
        if n == 1 { "" } else { "s" },
        if t.identities_only {
            " allowed by IdentitiesOnly"
        } else {
            ""
        }
    ));
    false
}

/// Whether a private key file is protected by a passphrase.
pub(crate) fn is_encrypted(key: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(key) else {
        return false;
    };
    if text.contains("ENCRYPTED") {
        return true;
    }
    // OpenSSH's own format: "openssh-key-v1\0", then the cipher's name ("none" when clear).
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    match STANDARD.decode(body.trim()) {
        Ok(b) if b.starts_with(b"openssh-key-v1\0") => {
            let rest = &b[15..];
            let n = rest
                .get(..4)
                .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize);
            !matches!(n.and_then(|n| rest.get(4..4 + n)), Some(b"none"))
        }
        _ => false,
    }
}

/// Tries one key file. `Err(Some)` when its passphrase was the problem.
fn key_file(
    sess: &ssh2::Session,
    t: &SshHost,
    opts: &Options,
    key: &Path,
) -> Result<(), Option<SshError>> {
    let public = pub_file(key);
    let public = public.is_file().then_some(public);
    let attempt = |pass: Option<&str>| -> Result<(), bool> {
        match sess.userauth_pubkey_file(&t.user, public.as_deref(), key, pass) {
            Ok(()) if sess.authenticated() => Ok(()),
            Ok(()) => Err(false),
            // The private key could not be read with this passphrase: LIBSSH2_ERROR_FILE
            // when libssh2 reads it first, LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED ("callback
            // returned error") when the server accepted the public key and signing failed.
            Err(e) => Err(matches!(
                e.code(),
                ssh2::ErrorCode::Session(-16) | ssh2::ErrorCode::Session(-19)
            )),
        }
    };
    if !is_encrypted(key) {
        return attempt(None).map_err(|_| None);
    }
    let account = passphrase_account(key);
    let mut wrong = false;
    if opts.keyring {
        if let Some(p) = keyring_get(&account) {
            match attempt(Some(p.expose())) {
                Ok(()) => return Ok(()),
                // The server refused the key itself: asking again will not help.
                Err(false) => return Err(None),
                Err(true) => {
                    wrong = true;
                    keyring_forget(&account);
                }
            }
        }
    }
    if let Some(prompt) = &opts.prompt {
        for _ in 0..TRIES {
            let Some(p) = prompt.secret(
                &t.spec,
                &format!("Passphrase for the key {}:", key.display()),
            ) else {
                break;
            };
            let p = Secret::new(p);
            match attempt(Some(p.expose())) {
                Ok(()) => {
                    if opts.keyring
                        && prompt.confirm(&format!(
                            "Store the passphrase of {} in the keyring?",
                            key.display()
                        ))
                    {
                        keyring_set(&account, &p);
                    }
                    return Ok(());
                }
                Err(false) => return Err(None),
                Err(true) => wrong = true,
            }
        }
    }
    Err(Some(SshError::WrongPassphrase {
        server: t.spec.clone(),
        key: key.to_path_buf(),
        missing: !wrong,
    }))
}

/// Tries the password: the keyring's, else asked for.
fn password(sess: &ssh2::Session, t: &SshHost, opts: &Options, tried: &mut Vec<String>) -> bool {
    let account = password_account(t);
    let mut any = false;
    if opts.keyring {
        if let Some(p) = keyring_get(&account) {
            any = true;
            if sess.userauth_password(&t.user, p.expose()).is_ok() && sess.authenticated() {
                return true;
            }
        }
    }
    if let Some(prompt) = &opts.prompt {
        for _ in 0..TRIES {
            let Some(p) = prompt.secret(&t.spec, &format!("Password for {}@{}:", t.user, t.host))
            else {
                break;
            };
            any = true;
            let p = Secret::new(p);
            if sess.userauth_password(&t.user, p.expose()).is_ok() && sess.authenticated() {
                if opts.keyring
                    && prompt.confirm(&format!(
                        "Store the password of {}@{} in the keyring?",
                        t.user, t.host
                    ))
                {
                    keyring_set(&account, &p);
                }
                return true;
            }
        }
    }
    if any {
        tried.push("password".into());
    } else {
        tried.push("no password (none in the keyring, and nobody to type one)".into());
    }
    false
}

/// Answers keyboard-interactive prompts: a stored password for a "Password:" prompt, anything
/// else (a one-time code) asked of the person.
struct Kbd<'a> {
    /// Where to ask.
    opts: &'a Options,
    /// The server's name, for the question.
    server: &'a str,
    /// A stored password, used once.
    password: Option<Secret>,
    /// Whether the stored password was given already.
    asked: bool,
}

impl ssh2::KeyboardInteractivePrompt for Kbd<'_> {
    fn prompt<'b>(
        &mut self,
        _username: &str,
        instructions: &str,
        prompts: &[ssh2::Prompt<'b>],
    ) -> Vec<String> {
        prompts
            .iter()
            .map(|p| {
                let text = p.text.trim();
                if text.to_ascii_lowercase().starts_with("password") && !self.asked {
                    if let Some(pw) = &self.password {
                        self.asked = true;
                        return pw.expose().to_string();
                    }
                }
                let question = if instructions.trim().is_empty() {
                    text.to_string()
                } else {
                    format!("{} {text}", instructions.trim())
                };
                self.opts
                    .prompt
                    .as_ref()
                    .and_then(|pr| pr.secret(self.server, &question))
                    .unwrap_or_default()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_keys_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let clear = dir.path().join("clear");
        let locked = dir.path().join("locked");
        for (path, pass) in [(&clear, ""), (&locked, "pass phrase")] {
            let ok = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", pass, "-f"])
                .arg(path)
                .status();
            if !ok.is_ok_and(|s| s.success()) {
                eprintln!("ssh-keygen missing; skipped");
                return;
            }
        }
        assert!(!is_encrypted(&clear));
        assert!(is_encrypted(&locked));
    }
}
