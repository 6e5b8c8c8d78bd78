//! The person's bookings in their own calendar: an .ics export over every connected server,
//! and a read-only feed on 127.0.0.1 at a path with a random token (kept across restarts).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::Utc;
use gpubook_client::feed::{FeedServer, FeedSet};
use gpubook_client::ical::{self, CalendarContext, EventData, Scope};
use gpubook_client::Connection;

use crate::error::AppError;
use crate::manager::Manager;
use tokio::sync::Notify;

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

/// Where downloads go: `$XDG_DOWNLOAD_DIR`, else ~/Downloads.
pub fn download_dir() -> PathBuf {
    std::env::var_os("XDG_DOWNLOAD_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp"))
                .join("Downloads")
        })
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

/// How often the feed checks for servers added or removed, and retries a server it could
/// not read yet.
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
/// (checked every [`FEED_POLL`]). It lists the person's bookings over the app's own
/// connection when the server connects and again whenever the manager hears one of that
/// server's events ([`Manager::changes`]), so the feed changes as the bookings do; and at
/// least every [`FEED_REFRESH`].
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
    // Subscribed before the first listing: a change during a listing is read again after it.
    let mut changes = m.changes();
    tokio::select! {
        biased;
        _ = stop.notified() => {}
        _ = async {
            // The calendar context of the connection it was loaded on.
            let mut ctx: Option<(Weak<Connection>, CalendarContext)> = None;
            loop {
                let mut listed = false;
                if let Ok((conn, _)) = m.connection(&id) {
                    let with_commands = m.settings().show_own_command_in_calendar;
                    let fresh = ctx.as_ref().is_some_and(|(on, c)| {
                        on.upgrade().is_some_and(|on| Arc::ptr_eq(&on, &conn))
                            && c.with_commands == with_commands
                    });
                    if !fresh {
                        ctx = CalendarContext::load(&conn, Scope::Mine, with_commands)
                            .await
                            .ok()
                            .map(|c| (Arc::downgrade(&conn), c));
                    }
                    if let Some((_, c)) = &ctx {
                        // A failed listing keeps what the feed showed.
                        if let Ok(bookings) = c.bookings(&conn).await {
                            set.replace(&id, c.clone(), bookings);
                            listed = true;
                        }
                    }
                }
                if listed {
                    wait_for_change(&mut changes, &id, FEED_REFRESH).await;
                } else {
                    // Not connected yet, or the listing failed: try again soon.
                    tokio::time::sleep(FEED_POLL).await;
                }
            }
        } => {}
    }
}

/// Waits until `changes` says server `id` (or every server) changed, or `at_most` passed.
/// Changes already queued count; a burst of them is one change.
async fn wait_for_change(
    changes: &mut tokio::sync::broadcast::Receiver<String>,
    id: &str,
    at_most: Duration,
) {
    use tokio::sync::broadcast::error::RecvError;
    let _ = tokio::time::timeout(at_most, async {
        loop {
            match changes.recv().await {
                Ok(c) if c == id || c == crate::manager::ALL_SERVERS => break,
                Ok(_) => {}
                // Missed some: one of them may have been ours.
                Err(RecvError::Lagged(_)) => break,
                // The manager is gone; the timeout ends the wait.
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    })
    .await;
    // The rest of a burst (a move sends several events) is covered by the listing to come.
    while changes.try_recv().is_ok() {}
}
