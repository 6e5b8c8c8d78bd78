//! The event pump: per server one task that connects (again and again, with a back-off),
//! subscribes to the event stream after the last event it handled (remembered across
//! restarts) with live readings, and hands every event to the web view, to the
//! notifications and to the tray's list of the person's own bookings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use gpubook_client::endpoint::DialError;
use gpubook_client::{ssh, ClientError, Pushed};
use gpubook_proto::{Event, ExtendRequest, ListRequest, Request};

use super::server::{set_status, set_status_login, Server};
use super::{connect, Inner, LOGIN_RETRY, UNREACHABLE_AFTER};
use crate::error::AppError;
use crate::ipc::{EventPayload, LogPayload, ReadingsPayload, ServerState};
use crate::notify;

/// Keeps server `s` connected and its events flowing, until the task is dropped.
pub(super) async fn pump(inner: Arc<Inner>, s: Arc<Server>) {
    let mut backoff = Duration::from_millis(250);
    // When the server was last known to be up or the pump started, and whether
    // "unreachable" has been notified for the current outage.
    let mut down_since = Instant::now();
    let mut notified_down = false;
    let mut ever_up = false;
    loop {
        let login_failed = match session(&inner, &s, &mut notified_down, &mut ever_up).await {
            Ok(()) => {
                backoff = Duration::from_millis(250);
                down_since = Instant::now();
                set_status(
                    &inner,
                    &s,
                    ServerState::Connecting,
                    Some("The connection was lost; reconnecting.".into()),
                    None,
                );
                false
            }
            Err(e) => {
                let login_failed = matches!(
                    &e,
                    DialError::Deploy(d) if d.ssh_kind() == Some(ssh::SshErrorKind::Auth)
                );
                let detail = e.to_string();
                let state = if down_since.elapsed() >= UNREACHABLE_AFTER || !ever_up || login_failed
                {
                    ServerState::Unreachable
                } else {
                    ServerState::Connecting
                };
                set_status_login(&inner, &s, state, Some(detail.clone()), None, login_failed);
                if ever_up && !notified_down && down_since.elapsed() >= UNREACHABLE_AFTER {
                    notified_down = true;
                    let settings = inner.settings.lock().unwrap().clone();
                    if let Some(n) =
                        notify::server_notice(&s.name(), false, Some(&detail), &settings)
                    {
                        inner.notifier.show(n, None);
                    }
                }
                login_failed
            }
        };
        // A refused login is not retried every few seconds: sshd (and fail2ban) count the
        // failures against the account; the person signs in (Manager::sign_in) instead.
        tokio::time::sleep(if login_failed { LOGIN_RETRY } else { backoff }).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: Ok when it ended after having been up.
async fn session(
    inner: &Arc<Inner>,
    s: &Arc<Server>,
    notified_down: &mut bool,
    ever_up: &mut bool,
) -> Result<(), DialError> {
    let conn = Arc::new(connect(&s.address, &s.ssh).await?);
    let welcome = conn.welcome().clone();
    let me = welcome.user.clone();
    let key = format!("{}|{}|{}", s.address, welcome.server, s.id);
    // The person's own bookings that have not ended, for the tray.
    let mine = conn
        .list_all(ListRequest {
            range: None,
            mine: true,
            include_past: false,
            after: None,
        })
        .await
        .map_err(DialError::from)?;
    let remembered = inner.last_seen.last_event(&key);
    let (latest, mut rx) = conn
        .subscribe(remembered, true)
        .await
        .map_err(DialError::from)?;
    if remembered.is_some_and(|r| r > latest) {
        // Another agent at the same address (its store was reset): start from now.
        inner.last_seen.forget(&key);
        return Err(ClientError::Protocol(
            "the agent's event numbers went back; subscribing again from now".into(),
        )
        .into());
    }
    if remembered.is_none() {
        inner.last_seen.set_last_event(&key, latest);
    }
    {
        let mut m = s.mine.lock().unwrap();
        m.clear();
        for b in mine.bookings {
            m.insert(b.id, b);
        }
    }
    *s.conn.lock().unwrap() = Some(conn.clone());
    *ever_up = true;
    set_status(inner, s, ServerState::Connected, None, Some(welcome));
    if *notified_down {
        *notified_down = false;
        let settings = inner.settings.lock().unwrap().clone();
        if let Some(n) = notify::server_notice(&s.name(), true, None, &settings) {
            inner.notifier.show(n, None);
        }
    }
    while let Some(p) = rx.recv().await {
        match p {
            Pushed::Event(ev) => handle_event(inner, s, &me, &key, ev),
            Pushed::Readings(r) => inner.sink.readings(&ReadingsPayload {
                server: s.id.clone(),
                readings: r,
            }),
            Pushed::Log(piece) => inner.sink.log(&LogPayload {
                server: s.id.clone(),
                piece,
            }),
            Pushed::Error(e) => eprintln!("gpubook: {}: {}", s.name(), e.message),
        }
    }
    s.conn.lock().unwrap().take();
    Ok(())
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
                    let conn = s.conn.lock().unwrap().clone();
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
