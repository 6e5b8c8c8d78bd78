//! Passwords and passphrases typed in the app for an SSH server: given to the SSH login when
//! it asks, kept only in memory for this run, and stored in the OS keyring only when the
//! person said so. What was typed for a server answers that server only (never a jump host
//! on the way to it), and each question at most once per login (a wrong passphrase is not
//! retried with the same text: the login goes on to the next method); the next login (a
//! reconnection after the network or the server went away) is answered again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use gpubook_client::ssh;

/// Answers the SSH login's questions with what the person typed in the app.
pub struct AppPrompt {
    /// The server (as the person named it) the secret was typed for; `None`: no secret.
    server: Option<String>,
    secret: Option<String>,
    remember: bool,
    /// The questions already answered in the current login.
    asked: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for AppPrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppPrompt")
            .field("server", &self.server)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("remember", &self.remember)
            .finish()
    }
}

impl AppPrompt {
    /// A prompt that answers `server`'s questions with `secret` and stores it in the keyring
    /// only if `remember`.
    pub fn new(server: &str, secret: Option<String>, remember: bool) -> Arc<Self> {
        Arc::new(Self {
            server: Some(server.trim().to_string()),
            secret,
            remember,
            asked: Mutex::new(HashSet::new()),
        })
    }
}

impl ssh::Prompt for AppPrompt {
    fn secret(&self, server: &str, question: &str) -> Option<String> {
        if self.server.as_deref() != Some(server.trim()) {
            return None;
        }
        let first = self
            .asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(question.to_string());
        if first {
            self.secret.clone()
        } else {
            None
        }
    }

    fn login_starts(&self, server: &str) {
        if self.server.as_deref() == Some(server.trim()) {
            self.asked.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    fn confirm(&self, question: &str) -> bool {
        // Only "store it in the keyring?"; a host key is accepted through accept_host_key,
        // where the person saw its fingerprint.
        self.remember && question.starts_with("Store the")
    }
}

/// SSH options for the servers of the list: the keyring's secrets only (stored with consent).
pub fn options() -> ssh::Options {
    ssh::Options {
        keyring: true,
        ..Default::default()
    }
}

/// SSH options for logging in to `server` (as the person named it): the keyring is read (and
/// written only with consent), and what the person typed answers that server's login.
pub fn options_for(server: &str, secret: Option<String>, remember: bool) -> ssh::Options {
    ssh::Options {
        prompt: Some(AppPrompt::new(server, secret, remember) as Arc<dyn ssh::Prompt>),
        keyring: true,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpubook_client::ssh::Prompt;

    #[test]
    fn answers_and_consent() {
        let p = AppPrompt::new("lab", Some("hunter2".into()), false);
        assert_eq!(
            p.secret("lab", "Password for a@lab:").as_deref(),
            Some("hunter2")
        );
        assert!(!p.confirm("Store the password of a@lab in the keyring?"));
        assert!(!format!("{p:?}").contains("hunter2"));
        let p = AppPrompt::new("lab", None, true);
        assert!(p.confirm("Store the password of a@lab in the keyring?"));
        assert!(!p.confirm("The host key of lab is not known yet: ... Trust it?"));
    }

    #[test]
    fn a_secret_answers_its_own_server_once_per_question() {
        let p = AppPrompt::new("lab1", Some("hunter2".into()), false);
        // A jump host on the way to lab1 never gets lab1's password.
        assert_eq!(p.secret("jump.example", "Password for a@jump:"), None);
        assert_eq!(
            p.secret("lab1", "Passphrase for the key /k:").as_deref(),
            Some("hunter2")
        );
        // Wrong as a passphrase: not offered again for it, so the login moves on...
        assert_eq!(p.secret("lab1", "Passphrase for the key /k:"), None);
        // ...to the password, which gets it once.
        assert_eq!(
            p.secret("lab1", "Password for a@lab1:").as_deref(),
            Some("hunter2")
        );
        assert_eq!(p.secret("lab1", "Password for a@lab1:"), None);
    }

    #[test]
    fn the_next_login_is_answered_again_but_a_jump_hosts_login_changes_nothing() {
        let p = AppPrompt::new("lab1", Some("hunter2".into()), false);
        p.login_starts("lab1");
        assert!(p.secret("lab1", "Password for a@lab1:").is_some());
        assert_eq!(p.secret("lab1", "Password for a@lab1:"), None);
        // A jump host's login on the way does not reopen lab1's questions...
        p.login_starts("jump.example");
        assert_eq!(p.secret("lab1", "Password for a@lab1:"), None);
        // ...lab1's next login (a reconnection) does: the password typed for this run.
        p.login_starts("lab1");
        assert_eq!(
            p.secret("lab1", "Password for a@lab1:").as_deref(),
            Some("hunter2")
        );
    }
}
