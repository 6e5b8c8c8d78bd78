//! Signing in to and out of the CalDAV account (the settings page), and the sync's status
//! for the web view.

use std::path::PathBuf;

use gpubook_client::caldav::{self, CaldavError, FollowOptions};
use gpubook_client::secrets::{self, Secret, SecretError};

use super::{sentence, Caldav, CaldavAccount, CaldavStatus, Listener};
use crate::error::{AppError, AppOnlyKind};
use crate::manager::Manager;

/// A CalDAV failure while logging in, as the UI's error; nothing was stored.
pub fn login_error(e: CaldavError) -> AppError {
    let message = match &e {
        CaldavError::Unauthorized { url, user } => format!(
            "The CalDAV server at {url} refused the password of {user} (401 Unauthorized); nothing was stored. Check the user and the password."
        ),
        other => format!(
            "{} Nothing was stored.",
            sentence(&other.to_string())
        ),
    };
    match e {
        CaldavError::Unauthorized { .. } | CaldavError::Forbidden { .. } => {
            AppError::app(AppOnlyKind::Auth, message, None)
        }
        CaldavError::BadUrl { .. }
        | CaldavError::NotACalendar { .. }
        | CaldavError::NotFound { .. } => AppError::internal(message).with_kind_invalid(),
        CaldavError::Unreachable { .. } | CaldavError::Server { .. } => {
            AppError::app(AppOnlyKind::Unreachable, message, None)
        }
        _ => AppError::internal(message),
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

impl Manager {
    /// The CalDAV sync's status.
    pub fn caldav_status(&self) -> CaldavStatus {
        self.caldav().status()
    }

    /// Calls `f` with the status every time it changes (replaces an earlier listener).
    pub fn on_caldav(&self, f: Listener) {
        self.caldav().st.lock().unwrap().listener = Some(f);
    }

    /// Where the sync keeps its state (the durable queue); `$XDG_STATE_HOME/gpubook` unless
    /// set (tests), shared with `gpubook caldav sync`.
    pub fn set_caldav_state_dir(&self, dir: PathBuf) {
        *self.caldav().state_dir.lock().unwrap() = Some(dir);
    }

    /// How the syncs pace themselves (tests shorten the waits); for syncs started after.
    pub fn set_caldav_follow_options(&self, opts: FollowOptions) {
        *self.caldav().opts.lock().unwrap() = opts;
    }

    /// Signs in to a CalDAV account: checks that `url` (and `all_url`) are calendar
    /// collections `user` may write with `password`, stores the password in the OS keyring
    /// only if `remember`, saves the account (never the password) in the settings, and starts
    /// syncing every server. On any error nothing is stored and an earlier account stays.
    pub async fn caldav_login(
        &self,
        url: &str,
        user: &str,
        all_url: Option<&str>,
        password: Secret,
        remember: bool,
    ) -> Result<CaldavStatus, AppError> {
        let invalid = |m: &str| AppError::internal(m).with_kind_invalid();
        let (url, user) = (url.trim(), user.trim());
        let all_url = all_url.map(str::trim).filter(|u| !u.is_empty());
        if url.is_empty() {
            return Err(invalid("Give the URL of your calendar collection, such as https://dav.example.org/calendars/alice/gpu/."));
        }
        if user.is_empty() {
            return Err(invalid("Give your user name on the CalDAV server."));
        }
        if password.expose().is_empty() {
            return Err(invalid("Type the password of the CalDAV account."));
        }
        if all_url.is_some_and(|a| same_url(a, url)) {
            return Err(invalid("The calendar for all of the lab's bookings must be another one than yours: they cannot share one."));
        }
        caldav::check_account(url, user, password.clone())
            .await
            .map_err(login_error)?;
        if let Some(a) = all_url {
            caldav::check_account(a, user, password.clone())
                .await
                .map_err(login_error)?;
        }
        if remember {
            let (u, n, p) = (url.to_string(), user.to_string(), password.clone());
            tokio::task::spawn_blocking(move || secrets::store_caldav_password(&u, &n, &p))
                .await
                .map_err(|e| AppError::internal(e.to_string()))?
                .map_err(|e| {
                    AppError::internal(format!(
                        "{} Nothing was stored; sign in without keeping the password to sync for this run only.",
                        sentence(&e.to_string())
                    ))
                })?;
        }
        let account = CaldavAccount {
            url: url.to_string(),
            user: user.to_string(),
            all_url: all_url.map(str::to_string),
        };
        self.save_caldav_account(Some(account.clone()))?;
        let c = self.caldav();
        {
            let mut st = c.st.lock().unwrap();
            Caldav::stop_all(&mut st);
            st.generation += 1;
            st.account = Some(account);
            st.password = Some(password);
            c.start_all(&mut st);
        }
        c.emit();
        Ok(c.status())
    }

    /// Signs out: the syncs stop, the account leaves the settings and its password the
    /// keyring. The events already in the collection stay there.
    pub async fn caldav_logout(&self) -> Result<(), AppError> {
        let c = self.caldav();
        let account = {
            let mut st = c.st.lock().unwrap();
            Caldav::stop_all(&mut st);
            st.generation += 1;
            st.password = None;
            st.account.take()
        };
        self.save_caldav_account(None)?;
        c.emit();
        if let Some(a) = account {
            let forgot = tokio::task::spawn_blocking(move || {
                secrets::forget_caldav_password(&a.url, &a.user)
            })
            .await
            .map_err(|e| AppError::internal(e.to_string()))?;
            match forgot {
                // Without a keyring nothing can have been stored in it.
                Ok(_) | Err(SecretError::Unavailable(_)) => {}
                Err(e) => {
                    return Err(AppError::internal(format!(
                        "Signed out, but the password could not be removed from the keyring: {e}"
                    )))
                }
            }
        }
        Ok(())
    }
}
