//! The person's bookings in their own calendar: an .ics export over every connected server,
//! and a read-only feed on 127.0.0.1 at a path with a random token (kept across restarts).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use gpubook_client::feed::{FeedServer, FeedSet};
use gpubook_client::ical::{self, CalendarContext, EventData, Scope};
use gpubook_client::live::{LiveEvent, LiveEvents};
use gpubook_client::{Connection, Pushed};

use crate::error::AppError;
use crate::manager::Manager;
use tokio::sync::{broadcast, Notify};

/// The .ics text of the person's bookings (`mine`) or of every booking, on every server the
/// app is connected to now.
pub async fn export_ics(m: &Manager, mine: bool) -> Result<String, AppError> {
    let scope = if mine { Scope::Mine } else { Scope::All };
    let with_commands = m.settings().show_own_command_in_calendar;
    let mut events: Vec<EventData> = Vec::new();
    let conns = m.connections();
    if conns.is_empty() {
        return Err(AppError::app(
            crate::error::AppOnlyKind::Unreachable,
            "No server is connected, so there are no bookings to export yet.",
            None,
        ));
    }
    for (id, name, conn) in conns {
        let ctx = CalendarContext::load(&conn, scope, with_commands)
            .await
            .map_err(|e| AppError::from_client(e, &id, &name))?;
        let bookings = ctx
            .bookings(&conn)
            .await
            .map_err(|e| AppError::from_client(e, &id, &name))?;
        events.extend(bookings.iter().map(|b| EventData::from_booking(b, &ctx)));
    }
    let name = if mine {
        "My GPU bookings"
    } else {
        "GPU bookings"
    };
    Ok(ical::calendar(name, &events, Utc::now()))
}

/// Where downloads go: `$XDG_DOWNLOAD_DIR`, else ~/Downloads (the Downloads folder on
/// Windows).
pub fn download_dir() -> PathBuf {
    gpubook_client::places::download_dir().unwrap_or_else(|| std::env::temp_dir().join("Downloads"))
}

/// Writes [`export_ics`]'s calendar to `dir` as gpubook-bookings-DATE.ics (or -2, -3...
/// beside an existing file) and returns the path.
pub async fn save_ics(m: &Manager, mine: bool, dir: &Path) -> Result<PathBuf, AppError> {
    let text = export_ics(m, mine).await?;
    std::fs::create_dir_all(dir)
        .map_err(|e| AppError::internal(format!("Cannot create {}: {e}", dir.display())))?;
    let stem = format!(
        "gpubook-{}-{}",
        if mine { "my-bookings" } else { "bookings" },
        chrono::Local::now().format("%Y-%m-%d")
    );
    let mut path = dir.join(format!("{stem}.ics"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{stem}-{n}.ics"));
        n += 1;
    }
    std::fs::write(&path, text)
        .map_err(|e| AppError::internal(format!("Cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// How often the feed checks for servers added or removed, and follows a server again
/// whose live session was replaced (signed in again).
pub const FEED_POLL: Duration = Duration::from_secs(1);

/// How often a server's bookings are read for the feed again when no change was heard (a
/// safety net: changes arrive as the server's events).
pub const FEED_REFRESH: Duration = Duration::from_secs(60);

/// Serves a live feed of the person's bookings on every server the app has (This computer
/// and each server of `m`, those added later included; a removed server's events leave it),
/// as one calendar, on 127.0.0.1 and a free port, with the token kept in `dir`. Returns its
/// URL at once: a server shows in the feed once it is connected, and keeps what it showed
/// while it is away. Runs until the runtime stops.
///
/// Each server has a follower of its own, started and stopped as the server list changes
/// (checked every [`FEED_POLL`]). It follows the server's live session (the manager's one
/// connection): the person's bookings are listed at each (re)connection, each event is
/// applied as it comes, and everything is listed again when a setting changes
/// ([`Manager::changes`]) and at least every [`FEED_REFRESH`].
pub async fn serve_feed(m: Manager, dir: &Path) -> Result<String, String> {
    let set = FeedSet::new("My GPU bookings");
    let server = FeedServer::bind_stored(SocketAddr::from(([127, 0, 0, 1], 0)), dir, false)
        .await
        .map_err(|e| {
            format!(
                "Cannot open the calendar feed on 127.0.0.1 (token in {}): {e}",
                dir.display()
            )
        })?;
    let url = server.url().map_err(|e| e.to_string())?;
    tokio::spawn(server.run(set.body(), std::future::pending()));
    tokio::spawn(follow_servers(m, set));
    Ok(url)
}

/// Keeps one follower per server of `m`, as servers come and go.
async fn follow_servers(m: Manager, set: FeedSet) {
    let mut followers: HashMap<String, Arc<Notify>> = HashMap::new();
    loop {
        let ids: Vec<String> = m.views().into_iter().map(|v| v.id).collect();
        followers.retain(|id, stop| {
            let keep = ids.contains(id);
            if !keep {
                stop.notify_one();
            }
            keep
        });
        // Also a part a stopped follower wrote just before it stopped.
        for key in set.servers() {
            if !ids.contains(&key) {
                set.remove(&key);
            }
        }
        for id in ids {
            if !followers.contains_key(&id) {
                let stop = Arc::new(Notify::new());
                followers.insert(id.clone(), stop.clone());
                tokio::spawn(follow_server(m.clone(), set.clone(), id, stop));
            }
        }
        tokio::time::sleep(FEED_POLL).await;
    }
}

/// Keeps server `id`'s part of the feed current until `stop`.
async fn follow_server(m: Manager, set: FeedSet, id: String, stop: Arc<Notify>) {
    // Subscribed before the first listing: a setting changed during it is read again.
    let mut changes = m.changes();
    tokio::select! {
        biased;
        _ = stop.notified() => {}
        _ = async {
            loop {
                // The session ends when the server is signed in again (a new one) or removed.
                if let Ok(events) = m.live_events(&id) {
                    follow_session(&m, &set, &id, events, &mut changes).await;
                }
                tokio::time::sleep(FEED_POLL).await;
            }
        } => {}
    }
}

/// Follows one live session of server `id` into its part of the feed, until it ends.
async fn follow_session(
    m: &Manager,
    set: &FeedSet,
    id: &str,
    mut events: LiveEvents,
    changes: &mut broadcast::Receiver<String>,
) {
    // The connection the part was listed on; `None` while down or not listed.
    let mut on: Option<Arc<Connection>> = None;
    loop {
        tokio::select! {
            e = events.recv() => match e {
                None => return,
                Some(LiveEvent::Connected { conn, .. }) => {
                    on = list(m, set, id, &conn).await.then_some(conn);
                }
                // Applied only to a part listed on this session (else the listing has it).
                Some(LiveEvent::Pushed(Pushed::Event(e))) if on.is_some() => {
                    set.apply(id, &e.booking);
                }
                Some(LiveEvent::Lost) => on = None,
                Some(_) => {}
            },
            _ = wait_for_setting(changes, FEED_REFRESH) => {
                if let Some(conn) = m.live_connection(id) {
                    on = list(m, set, id, &conn).await.then_some(conn);
                }
            }
        }
    }
}

/// Lists the person's bookings on `conn` into server `id`'s part; false if it failed (the
/// part keeps what it showed).
async fn list(m: &Manager, set: &FeedSet, id: &str, conn: &Connection) -> bool {
    let with_commands = m.settings().show_own_command_in_calendar;
    let Ok(ctx) = CalendarContext::load(conn, Scope::Mine, with_commands).await else {
        return false;
    };
    match ctx.bookings(conn).await {
        Ok(bookings) => {
            set.replace(id, ctx, bookings);
            true
        }
        Err(_) => false,
    }
}

/// Waits until `changes` says every server changed (a setting), or `at_most` passed. A
/// burst of changes is one change.
async fn wait_for_setting(changes: &mut broadcast::Receiver<String>, at_most: Duration) {
    use tokio::sync::broadcast::error::RecvError;
    let _ = tokio::time::timeout(at_most, async {
        loop {
            match changes.recv().await {
                Ok(c) if c == crate::manager::ALL_SERVERS => break,
                Ok(_) => {}
                // Missed some: one of them may have been a setting.
                Err(RecvError::Lagged(_)) => break,
                // The manager is gone; the timeout ends the wait.
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    })
    .await;
    // The rest of a burst is covered by the listing to come.
    while changes.try_recv().is_ok() {}
}
