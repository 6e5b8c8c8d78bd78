//! Passwords and passphrases typed in the app for an SSH server: given to the SSH login when
//! it asks, kept only in memory for this run, and stored in the OS keyring only when the
//! person said so.

use std::sync::Arc;

use gpubook_client::ssh;

/// Answers the SSH login's questions with what the person typed in the app.
pub struct AppPrompt {
    secret: Option<String>,
    remember: bool,
}

impl std::fmt::Debug for AppPrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppPrompt")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("remember", &self.remember)
            .finish()
    }
}

impl AppPrompt {
    /// A prompt that answers with `secret` and stores it in the keyring only if `remember`.
    pub fn new(secret: Option<String>, remember: bool) -> Arc<Self> {
        Arc::new(Self { secret, remember })
    }
}

impl ssh::Prompt for AppPrompt {
    fn secret(&self, _server: &str, _question: &str) -> Option<String> {
        self.secret.clone()
    }

    fn confirm(&self, question: &str) -> bool {
        // Only "store it in the keyring?"; a host key is accepted through accept_host_key,
        // where the person saw its fingerprint.
        self.remember && question.starts_with("Store the")
    }
}

/// SSH options for a server: the keyring is read (and written only with consent), and what
/// the person typed answers the login.
pub fn options(secret: Option<String>, remember: bool) -> ssh::Options {
    ssh::Options {
        prompt: Some(AppPrompt::new(secret, remember) as Arc<dyn ssh::Prompt>),
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
        let p = AppPrompt::new(Some("hunter2".into()), false);
        assert_eq!(
            p.secret("lab", "Password for a@lab:").as_deref(),
            Some("hunter2")
        );
        assert!(!p.confirm("Store the password of a@lab in the keyring?"));
        assert!(!format!("{p:?}").contains("hunter2"));
        let p = AppPrompt::new(None, true);
        assert!(p.confirm("Store the password of a@lab in the keyring?"));
        assert!(!p.confirm("The host key of lab is not known yet: ... Trust it?"));
    }
}
