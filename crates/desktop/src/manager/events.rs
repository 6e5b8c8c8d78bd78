//! The event relay: per server one live session (gpubook_client::live) that subscribes
//! after the last event the app handled (remembered across restarts, [`crate::last_seen`])
//! with live readings; this task hands every event to the web view, to the notifications
//! and to the tray's list of the person's own bookings, and turns the session's status
//! into the server's state, "unreachable" and "back" notices included.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use chrono::Utc;
use gpubook_client::endpoint::DialError;
use gpubook_client::live::{LiveEvent, LiveEvents, LiveOptions, LiveSession, LiveStatus, StartAt};
use gpubook_client::ssh::SshErrorKind;
use gpubook_client::{Connection, Pushed};
use gpubook_proto::{Event, ExtendRequest, ListRequest, Request, Welcome};
use tokio::sync::watch;

use super::server::{set_status, set_status_why, Server, Waits};
use super::{connect, Inner};
use crate::error::AppError;
use crate::ipc::{EventPayload, LogPayload, ReadingsPayload, ServerState};
use crate::notify;

/// The key the last event seen is kept under: the address, the agent's server name and the
/// app's id of the server, so that another agent at the same address starts afresh.
fn last_seen_key(s: &Server, welcome: &Welcome) -> String {
    format!("{}|{}|{}", s.address, welcome.server, s.id)
}

/// Starts server `s`'s live session: its first subscription resumes after the last event
/// the app handled from that agent.
pub(super) fn start_session(inner: &Arc<Inner>, s: &Arc<Server>) -> (LiveSession, LiveEvents) {
    let _rt = inner.rt.enter();
    let (address, ssh) = (s.address.clone(), s.ssh.clone());
    let (weak_inner, weak_server): (Weak<Inner>, Weak<Server>) =
        (Arc::downgrade(inner), Arc::downgrade(s));
    let remembered = move |w: &Welcome| {
        let (inner, s) = (weak_inner.upgrade()?, weak_server.upgrade()?);
        inner.last_seen.last_event(&last_seen_key(&s, w))
    };
    let dialled = Arc::downgrade(s);
    LiveSession::start(
        move || {
            let (address, ssh, dialled) = (address.clone(), ssh.clone(), dialled.clone());
            async move {
                let r = connect(&address, &ssh).await;
                // Told before the session reports the failure, so its status reads it.
                if let Some(s) = dialled.upgrade() {
                    s.host_key_refused.store(
                        matches!(&r, Err(DialError::Deploy(d)) if d.ssh_kind() == Some(SshErrorKind::HostKeyChanged)),
                        Ordering::SeqCst,
                    );
                }
                r
            }
        },
        LiveOptions {
            start: StartAt::Remembered(Arc::new(remembered)),
            readings: true,
        },
    )
}

/// What the relay knows of the current connection.
#[derive(Debug, Default)]
struct Current {
    /// The person's user name on the server.
    me: String,
    /// Where the last event seen is kept.
    key: String,
    /// The server was connected at least once.
    was_up: bool,
    /// "Unreachable" was notified for the current outage.
    notified_down: bool,
}

/// Relays server `s`'s live session to the app until the session ends.
pub(super) async fn relay_events(
    inner: Arc<Inner>,
    s: Arc<Server>,
    mut events: LiveEvents,
    mut status: watch::Receiver<LiveStatus>,
) {
    let mut cur = Current::default();
    loop {
        tokio::select! {
            e = events.recv() => match e {
                None => return,
                Some(LiveEvent::Connected { conn, latest, .. }) => {
                    connected(&inner, &s, &conn, latest, &mut cur).await;
                }
                Some(LiveEvent::Pushed(p)) => match p {
                    Pushed::Event(ev) => handle_event(&inner, &s, &cur.me, &cur.key, ev),
                    Pushed::Readings(r) => inner.sink.readings(&ReadingsPayload {
                        server: s.id.clone(),
                        readings: r,
                    }),
                    Pushed::Log(piece) => inner.sink.log(&LogPayload {
                        server: s.id.clone(),
                        piece,
                    }),
                    Pushed::Error(e) => eprintln!("gpubook: {}: {}", s.name(), e.message),
                },
                Some(LiveEvent::Lost) => {}
            },
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
                let st = status.borrow_and_update().clone();
                down(&inner, &s, st, &mut cur);
            }
        }
    }
}

/// The session is up on `conn`: the person's own bookings are read again for the tray, the
/// server shows connected, and "back" is notified after an "unreachable".
async fn connected(
    inner: &Arc<Inner>,
    s: &Arc<Server>,
    conn: &Arc<Connection>,
    latest: u64,
    cur: &mut Current,
) {
    let welcome = conn.welcome().clone();
    cur.me = welcome.user.clone();
    cur.key = last_seen_key(s, &welcome);
    match inner.last_seen.last_event(&cur.key) {
        // Another agent at the same address (its store was reset): the session follows it
        // from now, and so does what is remembered.
        Some(r) if r > latest => {
            inner.last_seen.forget(&cur.key);
            inner.last_seen.set_last_event(&cur.key, latest);
        }
        Some(_) => {}
        None => inner.last_seen.set_last_event(&cur.key, latest),
    }
    let mine = conn
        .list_all(ListRequest {
            range: None,
            mine: true,
            include_past: false,
            after: None,
        })
        .await;
    match mine {
        Ok(mine) => {
            let mut m = s.mine.lock().unwrap();
            m.clear();
            for b in mine.bookings {
                m.insert(b.id, b);
            }
        }
        // The events still come; the tray catches up at the next connection.
        Err(e) => eprintln!("gpubook: {}: cannot list your bookings: {e}", s.name()),
    }
    cur.was_up = true;
    set_status(inner, s, ServerState::Connected, None, Some(welcome));
    if cur.notified_down {
        cur.notified_down = false;
        let settings = inner.settings.lock().unwrap().clone();
        if let Some(n) = notify::server_notice(&s.name(), true, None, &settings) {
            inner.notifier.show(n, None);
        }
    }
}

/// The session is down (or connecting): the server's state, and "unreachable" notified
/// once per outage of a server that was up.
fn down(inner: &Inner, s: &Server, st: LiveStatus, cur: &mut Current) {
    // A changed (or revoked) host key is a refusal, not an outage: said at once as what it
    // is, and tried again on the outage schedule (the admin may put the key back).
    if let Some(reason) = st
        .reason()
        .filter(|_| s.host_key_refused.load(Ordering::SeqCst))
    {
        let reason = reason.to_string();
        set_status_why(
            inner,
            s,
            ServerState::Unreachable,
            Some(reason.clone()),
            None,
            Waits::HostKey,
        );
        if cur.was_up && !cur.notified_down {
            cur.notified_down = true;
            let settings = inner.settings.lock().unwrap().clone();
            if let Some(n) = notify::host_key_notice(&s.name(), &reason, &settings) {
                inner.notifier.show(n, None);
            }
        }
        return;
    }
    match st {
        LiveStatus::Connecting | LiveStatus::Connected { .. } => {}
        LiveStatus::Reconnecting { reason, .. } => {
            let detail = if reason == gpubook_client::live::LOST {
                "The connection was lost; reconnecting.".to_string()
            } else {
                reason
            };
            set_status(inner, s, ServerState::Connecting, Some(detail), None);
        }
        // A refused login waits for the person (Manager::sign_in).
        LiveStatus::LoginRefused { reason, .. } => {
            set_status_why(
                inner,
                s,
                ServerState::Unreachable,
                Some(reason),
                None,
                Waits::Login,
            );
        }
        LiveStatus::Unreachable { reason, .. } => {
            set_status(
                inner,
                s,
                ServerState::Unreachable,
                Some(reason.clone()),
                None,
            );
            if cur.was_up && !cur.notified_down {
                cur.notified_down = true;
                let settings = inner.settings.lock().unwrap().clone();
                if let Some(n) = notify::server_notice(&s.name(), false, Some(&reason), &settings) {
                    inner.notifier.show(n, None);
                }
            }
        }
    }
}

fn handle_event(inner: &Arc<Inner>, s: &Arc<Server>, me: &str, key: &str, ev: Event) {
    if ev.booking.owner == me {
        let mut m = s.mine.lock().unwrap();
        if ev.booking.state.is_final() {
            m.remove(&ev.booking.id);
        } else {
            m.insert(ev.booking.id, ev.booking.clone());
        }
    }
    inner.sink.event(&EventPayload {
        server: s.id.clone(),
        event: ev.clone(),
    });
    // No receiver (no feed) is fine.
    let _ = inner.changes.send(s.id.clone());
    let settings = inner.settings.lock().unwrap().clone();
    if let Some(n) = notify::decide(&ev, &s.id, &s.name(), me, Utc::now(), &settings) {
        let on_extend = n.extend.clone().map(|offer| {
            let s = s.clone();
            let inner = inner.clone();
            Box::new(move || {
                let rt = inner.rt.clone();
                rt.spawn(async move {
                    let conn = s.connection();
                    let Some(conn) = conn else { return };
                    let r = conn
                        .request(Request::Extend(ExtendRequest {
                            id: offer.id,
                            end: offer.to,
                        }))
                        .await;
                    if let Err(e) = r {
                        inner.notifier.show(
                            notify::Notice {
                                kind: "slot_ending",
                                summary: "The booking could not be extended".into(),
                                body: AppError::from_client(e, &s.id, &s.name()).message,
                                extend: None,
                            },
                            None,
                        );
                    }
                });
            }) as Box<dyn FnOnce() + Send>
        });
        inner.notifier.show(n, on_extend);
    }
    // Remembered after the notification was handed over: a crash in between shows it
    // again rather than never.
    inner.last_seen.set_last_event(key, ev.seq);
}
