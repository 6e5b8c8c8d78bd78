//! Passwords in the OS keyring (the Secret Service over D-Bus on Linux: GNOME Keyring,
//! KWallet), never in a file: the CalDAV account's password.
//!
//! Every call talks to the keyring over D-Bus and blocks; from async code, call it in
//! `spawn_blocking`.

use std::fmt;
use thiserror::Error;

/// The keyring service name under which gpubook stores a CalDAV account's password; the
/// account's URL follows it, the user name is the item's user.
pub const CALDAV_SERVICE: &str = "gpubook-caldav";

/// A password. Its Debug output says "hidden", so it never lands in a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The password itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

/// Why the keyring did not give or take a password.
#[derive(Debug, Error)]
pub enum SecretError {
    /// Nothing is stored for this account.
    #[error("no password for {user} at {url} in the keyring: store it with `gpubook caldav login --url {url} --user {user}`")]
    Missing {
        /// The account's URL.
        url: String,
        /// The account's user.
        user: String,
    },
    /// No keyring could be reached, or it is locked and would not open.
    #[error("the keyring (Secret Service over D-Bus: GNOME Keyring, KWallet) cannot be used: {0}. Is a desktop session with a keyring running? (a headless machine: start one with `dbus-run-session` and `gnome-keyring-daemon --unlock`)")]
    Unavailable(String),
    /// The keyring refused or failed in another way.
    #[error("the keyring failed: {0}")]
    Failed(String),
}

/// The keyring entry of a CalDAV account.
fn entry(url: &str, user: &str) -> Result<keyring::Entry, SecretError> {
    keyring::Entry::new(&format!("{CALDAV_SERVICE} {url}"), user).map_err(map_err(url, user))
}

fn map_err(url: &str, user: &str) -> impl Fn(keyring::Error) -> SecretError {
    let (url, user) = (url.to_string(), user.to_string());
    move |e| match e {
        keyring::Error::NoEntry => SecretError::Missing {
            url: url.clone(),
            user: user.clone(),
        },
        keyring::Error::PlatformFailure(e) | keyring::Error::NoStorageAccess(e) => {
            SecretError::Unavailable(e.to_string())
        }
        other => SecretError::Failed(other.to_string()),
    }
}

/// Stores the password of `user` at the CalDAV collection `url`, replacing any stored one.
pub fn store_caldav_password(url: &str, user: &str, password: &Secret) -> Result<(), SecretError> {
    entry(url, user)?
        .set_password(password.expose())
        .map_err(map_err(url, user))
}

/// The stored password of `user` at `url`.
pub fn caldav_password(url: &str, user: &str) -> Result<Secret, SecretError> {
    entry(url, user)?
        .get_password()
        .map(Secret)
        .map_err(map_err(url, user))
}

/// Removes the stored password of `user` at `url`; `false` when there was none.
pub fn forget_caldav_password(url: &str, user: &str) -> Result<bool, SecretError> {
    match entry(url, user)?.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring::Error::NoEntry) => Ok(false),
        Err(e) => Err(map_err(url, user)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(hidden)");
        assert_eq!(s.expose(), "hunter2");
    }
}
