//! The Settings page's way to a CalDAV calendar without knowing its URL: the person's
//! calendars found from their server's address (crates/client's discovery), and a new one
//! made for the bookings. The chosen calendar's URL then goes to `caldav_login` as before.
//! Nothing is stored here: the password is used for these requests and dropped.

use crate::error::AppOnlyKind;
use crate::AppError;
use gpubook_client::caldav::{DiscoverError, Discovery, Found, FoundCalendar};
use gpubook_client::secrets::Secret;
use serde::{Deserialize, Serialize};

/// One of the person's calendars, as the Settings page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
pub struct CaldavCalendar {
    /// The collection's URL: what `caldav_login` takes.
    pub url: String,
    /// Its display name.
    pub name: String,
    /// Whether it takes events; only those can hold the bookings.
    pub events: bool,
}

/// The person's calendars at a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
pub struct CaldavCalendars {
    /// Where the account's calendars live (a new one is made there).
    pub home: String,
    /// Its calendars, by name.
    pub calendars: Vec<CaldavCalendar>,
}

impl From<FoundCalendar> for CaldavCalendar {
    fn from(c: FoundCalendar) -> Self {
        Self {
            url: c.url,
            name: c.name,
            events: c.events,
        }
    }
}

impl From<Found> for CaldavCalendars {
    fn from(f: Found) -> Self {
        Self {
            home: f.home,
            calendars: f.calendars.into_iter().map(Into::into).collect(),
        }
    }
}

/// The calendars of `user` at the server `address` (e.g. "cloud.example.org").
pub async fn discover_calendars(
    address: &str,
    user: &str,
    password: Secret,
) -> Result<CaldavCalendars, AppError> {
    let d = Discovery::new(address, Some(user), password).map_err(discover_error)?;
    Ok(d.find().await.map_err(discover_error)?.into())
}

/// A calendar for events called `name` of `user`'s at `address`: the one of that name when
/// there is one, else a new one (MKCALENDAR).
pub async fn create_calendar(
    address: &str,
    user: &str,
    password: Secret,
    name: &str,
) -> Result<CaldavCalendar, AppError> {
    if name.trim().is_empty() {
        return Err(AppError::internal("Give the new calendar a name.").with_kind_invalid());
    }
    let d = Discovery::new(address, Some(user), password).map_err(discover_error)?;
    let found = d.find().await.map_err(discover_error)?;
    if let Some(c) = found.named(name).filter(|c| c.events) {
        return Ok(c.clone().into());
    }
    Ok(d.create(&found, name).await.map_err(discover_error)?.into())
}

/// A discovery failure as the UI's error: a refused password is `auth`, a server away is
/// `unreachable`, an address that is not a CalDAV server (or an account without calendars)
/// is `invalid`.
pub fn discover_error(e: DiscoverError) -> AppError {
    let message = e.to_string();
    let mut chars = message.chars();
    let message = match chars.next() {
        Some(c) => format!("{}{}.", c.to_uppercase(), chars.as_str()),
        None => message,
    };
    match e {
        DiscoverError::Unauthorized { .. } => AppError::app(AppOnlyKind::Auth, message, None),
        DiscoverError::Http(e) if e.is_transient() => {
            AppError::app(AppOnlyKind::Unreachable, message, None)
        }
        DiscoverError::Http(_) => AppError::internal(message),
        DiscoverError::BadAddress { .. }
        | DiscoverError::NotCaldav { .. }
        | DiscoverError::NoCalendarHome { .. } => AppError::internal(message).with_kind_invalid(),
    }
}
