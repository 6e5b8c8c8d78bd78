//! Calendar export: the .ics text, the URL of the live feed for calendar apps, and the
//! CalDAV account synced in the background.

use std::sync::{Arc, Mutex};

use gpubook_client::secrets::Secret;
use gpubook_desktop::contract::events;
use gpubook_desktop::error::AppOnlyKind;
use gpubook_desktop::{caldav_discover, calendar, paths, AppError, CaldavStatus, Manager};
use tauri::{AppHandle, Manager as _};

use super::{manager, Answer};
use crate::sink::emit;

/// The feed's URL once it serves, or why it does not.
#[derive(Debug, Clone)]
pub struct FeedState(Arc<Mutex<Option<Result<String, String>>>>);

impl FeedState {
    /// Starts serving the feed of every server of `m` in the background.
    pub fn start(m: Manager) -> Self {
        let state = Self(Arc::new(Mutex::new(None)));
        let slot = state.0.clone();
        tauri::async_runtime::spawn(async move {
            // Servers show in it as they connect (the local agent may still be starting).
            let served = calendar::serve_feed(m, &paths::data_dir()).await;
            *slot.lock().unwrap() = Some(served);
        });
        state
    }
}

/// The .ics text of the person's bookings (`mine`) or of all, on every connected server.
pub async fn export_ics(app: &AppHandle, mine: bool) -> Answer<String> {
    calendar::export_ics(&manager(app), mine).await
}

/// Saves the .ics into the Downloads folder and returns its path (WebKitGTK offers no
/// download of a blob URL by itself).
pub async fn save_ics(app: &AppHandle, mine: bool) -> Answer<String> {
    calendar::save_ics(&manager(app), mine, &calendar::download_dir())
        .await
        .map(|p| p.display().to_string())
}

/// The URL a calendar app can subscribe to (the person's bookings on every server).
pub async fn feed_url(app: &AppHandle) -> Answer<String> {
    let feed = app.state::<FeedState>();
    let served = feed.0.lock().unwrap().clone();
    match served {
        Some(Ok(url)) => Ok(url),
        Some(Err(e)) => Err(AppError::app(
            AppOnlyKind::Unreachable,
            format!("The calendar feed is not available: {e}"),
            Some("local"),
        )),
        None => Err(AppError::app(
            AppOnlyKind::Unreachable,
            "The calendar feed is still starting; try again in a moment.",
            Some("local"),
        )),
    }
}

/// Pushes every change of the CalDAV status to the web view as "gpubook://caldav".
fn emit_caldav(app: &AppHandle, m: &Manager) {
    let app = app.clone();
    m.on_caldav(Arc::new(move |s: &CaldavStatus| {
        emit::<events::Caldav>(&app, s);
    }));
}

/// The CalDAV sync's status; from now on its changes are pushed as "gpubook://caldav".
pub async fn caldav_status(app: &AppHandle) -> Answer<CaldavStatus> {
    let m = manager(app);
    emit_caldav(app, &m);
    Ok(m.caldav_status())
}

/// Signs in to a CalDAV account: checks it, keeps the password in the OS keyring only if
/// `remember`, saves the account (never the password) and syncs in the background.
pub async fn caldav_login(
    app: &AppHandle,
    url: String,
    user: String,
    all_url: Option<String>,
    password: String,
    remember: bool,
) -> Answer<CaldavStatus> {
    let m = manager(app);
    emit_caldav(app, &m);
    m.caldav_login(
        &url,
        &user,
        all_url.as_deref(),
        Secret::new(password),
        remember,
    )
    .await
}

/// The person's calendars at the CalDAV server `url` (its address, e.g. cloud.example.org),
/// to choose one for `caldav_login`; nothing is stored.
pub async fn caldav_discover(
    _app: &AppHandle,
    url: String,
    user: String,
    password: String,
) -> Answer<caldav_discover::CaldavCalendars> {
    caldav_discover::discover_calendars(&url, &user, Secret::new(password)).await
}

/// A calendar for the bookings called `name` at the CalDAV server `url`: the one of that name,
/// or a new one; nothing is stored.
pub async fn caldav_create_calendar(
    _app: &AppHandle,
    url: String,
    user: String,
    password: String,
    name: String,
) -> Answer<caldav_discover::CaldavCalendar> {
    caldav_discover::create_calendar(&url, &user, Secret::new(password), &name).await
}

/// Signs out: the sync stops, the account and its keyring entry are removed.
pub async fn caldav_logout(app: &AppHandle) -> Answer<()> {
    manager(app).caldav_logout().await
}
