//! The person's bookings in their own calendar: an .ics export over every connected server,
//! and a read-only feed on 127.0.0.1 at a path with a random token (kept across restarts).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::Utc;
use gpubook_client::feed::{self, Feed, FeedServer};
use gpubook_client::ical::{self, CalendarContext, EventData, Scope};
use gpubook_client::Connection;

use crate::error::AppError;
use crate::manager::{Manager, CLIENT_NAME};

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

/// Serves a live feed of the person's bookings on This computer's agent at `socket`, on
/// 127.0.0.1 and a free port, with the token kept in `dir`. Returns its URL. Runs until the
/// runtime stops.
pub async fn serve_feed(
    socket: PathBuf,
    dir: &Path,
    with_commands: bool,
) -> Result<String, String> {
    let token = feed::stored_token(dir, false)
        .map_err(|e| format!("Cannot keep the feed's token in {}: {e}", dir.display()))?;
    let connect = {
        let socket = socket.clone();
        move || {
            let socket = socket.clone();
            async move { Connection::unix(&socket, CLIENT_NAME).await }
        }
    };
    let conn = connect().await.map_err(|e| e.to_string())?;
    let ctx = CalendarContext::load(&conn, Scope::Mine, with_commands)
        .await
        .map_err(|e| e.to_string())?;
    let bookings = ctx.bookings(&conn).await.map_err(|e| e.to_string())?;
    drop(conn);
    let mut feed = Feed::new(ctx, bookings);
    let server = FeedServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), token)
        .await
        .map_err(|e| format!("Cannot open the calendar feed on 127.0.0.1: {e}"))?;
    let url = server.url().map_err(|e| e.to_string())?;
    let body = feed.body();
    tokio::spawn(server.run(body, std::future::pending()));
    tokio::spawn(async move {
        feed::keep_current(connect, &mut feed, std::future::pending()).await;
    });
    Ok(url)
}
