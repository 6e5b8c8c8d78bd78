//! The app's CalDAV account against a real Radicale on 127.0.0.1 and a real agent (in this
//! process, simulated GPUs), through the same `Manager` calls the Tauri commands make:
//! a wrong password or URL is a clear error and stores nothing; signing in syncs the
//! person's bookings (and the lab's to a second collection) and follows changes; the
//! collection is read back over CalDAV (a REPORT from Python) and parsed by Python's
//! `icalendar`; signing out stops the sync and removes the account from the settings file.
//!
//! Needs Radicale and icalendar in `$GPUBOOK_PYTHON` (scripts/calendar-services.sh): fails
//! without them when `GPUBOOK_REQUIRE_SERVICES=1`, else says why and does nothing. The
//! keyring is not used (remember = false); crates/client/tests/keyring.rs tests that path.

use std::path::Path;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gpubook_client::caldav::FollowOptions;
use gpubook_client::secrets::Secret;
use gpubook_client::Connection;
use gpubook_core::{Booking, BookingState};
use gpubook_desktop::error::{AppErrorKind, AppOnlyKind};
use gpubook_desktop::notify::{Notice, Notifier};
use gpubook_desktop::{
    calendar, Address, CaldavState, CaldavStatus, EventPayload, Files, Manager, ReadingsPayload,
    ServerView, Sink,
};
use gpubook_proto::{CancelRequest, Request, Response};
use gpubook_testkit::agent::{InProcessAgent, SERVER};
use gpubook_testkit::keyring::KeyringSession;
use gpubook_testkit::radicale::{read_back, Radicale, PASSWORD, USER};
use gpubook_testkit::{bookings, require_python, wait_until as until};

/// Whether Radicale and icalendar can be used (the testkit's require-or-skip rule).
fn have_services() -> bool {
    require_python("caldav_app", "radicale, icalendar")
}

/// The UIDs in the collection with their STATUS.
fn uids(url: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = read_back(url)
        .iter()
        .map(|e| {
            (
                e["uid"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn uid(b: &Booking) -> String {
    format!("{}@{SERVER}", b.id)
}

#[derive(Debug, Default)]
struct Quiet;

impl Sink for Quiet {
    fn server(&self, _: &ServerView) {}
    fn event(&self, _: &EventPayload) {}
    fn readings(&self, _: &ReadingsPayload) {}
}

impl Notifier for Quiet {
    fn show(&self, _: Notice, _: Option<Box<dyn FnOnce() + Send>>) {}
}

/// An agent in this process with four simulated GPUs.
async fn agent() -> InProcessAgent {
    InProcessAgent::builder(4)
        .sample_every(Duration::from_secs(5))
        .start()
        .await
}

/// A booking of GPU `gpu` for two slots from slot `from`.
async fn book(conn: &Connection, gpu: u32, from: i64, title: &str) -> Booking {
    bookings::book(conn, &[gpu], from, from + 2, title).await
}

fn settings_text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A Unix socket at `at` that forwards each connection to the agent at `to`, and the number
/// of connections open through it now: what the app holds to that server.
fn counting_proxy(at: PathBuf, to: PathBuf) -> Arc<std::sync::atomic::AtomicUsize> {
    use std::sync::atomic::Ordering::SeqCst;
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::UnixListener::bind(&at).unwrap();
    let count = open.clone();
    tokio::spawn(async move {
        while let Ok((mut app, _)) = listener.accept().await {
            let (to, count) = (to.clone(), count.clone());
            count.fetch_add(1, SeqCst);
            tokio::spawn(async move {
                if let Ok(mut agent) = tokio::net::UnixStream::connect(&to).await {
                    let _ = tokio::io::copy_bidirectional(&mut app, &mut agent).await;
                }
                count.fetch_sub(1, SeqCst);
            });
        }
    });
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_sync_follow_and_sign_out() {
    if !have_services() {
        return;
    }
    let radicale = Radicale::start().await;
    let mine_url = radicale.mkcalendar("gpu").await;
    let lab_url = radicale.mkcalendar("lab").await;
    let agent = agent().await;
    let conn = Connection::unix(&agent.socket(), "test").await.unwrap();
    let first = book(&conn, 0, 0, "before signing in").await;
    assert_eq!(first.state, BookingState::Confirmed);

    let app = tempfile::tempdir().unwrap();
    let files = Files {
        settings: app.path().join("settings.json"),
        last_seen: app.path().join("last-seen.json"),
    };
    let m = Manager::new(
        files.clone(),
        Arc::new(Quiet),
        Arc::new(Quiet),
        tokio::runtime::Handle::current(),
        Default::default(),
    );
    m.set_caldav_state_dir(app.path().join("state"));
    m.set_caldav_follow_options(FollowOptions {
        reconcile_every: Duration::from_secs(600),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_secs(1),
    });
    let heard: Arc<Mutex<Vec<CaldavStatus>>> = Arc::default();
    let h = heard.clone();
    m.on_caldav(Arc::new(move |s| h.lock().unwrap().push(s.clone())));
    // The app reaches the agent through a proxy that counts its connections.
    let open = counting_proxy(app.path().join("proxy.sock"), agent.socket());
    m.add(
        "local",
        "This computer",
        Address::Unix(app.path().join("proxy.sock")),
    );
    let _feed = calendar::serve_feed(m.clone(), &app.path().join("feed"))
        .await
        .unwrap();
    assert_eq!(m.caldav_status().state, CaldavState::Off);

    // A wrong password: a clear error, nothing stored, nothing synced.
    let e = m
        .caldav_login(&mine_url, USER, None, Secret::new("wrong"), false)
        .await
        .unwrap_err();
    assert_eq!(e.kind, AppErrorKind::App(AppOnlyKind::Auth), "{e:?}");
    assert!(
        e.message.contains("refused the password") && e.message.contains("nothing was stored"),
        "{}",
        e.message
    );
    assert!(!settings_text(&files.settings).contains("caldav"));
    assert_eq!(m.caldav_status().state, CaldavState::Off);
    // A URL with no calendar, and the same calendar twice: clear errors too.
    let e = m
        .caldav_login(
            &radicale.url("nope"),
            USER,
            None,
            Secret::new(PASSWORD),
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        AppErrorKind::Agent(gpubook_proto::ErrorKind::Invalid)
    );
    assert!(e.message.contains("Nothing was stored"), "{}", e.message);
    let e = m
        .caldav_login(
            &mine_url,
            USER,
            Some(&mine_url),
            Secret::new(PASSWORD),
            false,
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("another one"), "{}", e.message);
    assert!(!settings_text(&files.settings).contains("caldav"));
    assert!(read_back(&mine_url).is_empty());

    // Signing in: the account is saved (never the password) and the sync starts.
    let t0 = Instant::now();
    let s = m
        .caldav_login(
            &mine_url,
            USER,
            Some(&lab_url),
            Secret::new(PASSWORD),
            false,
        )
        .await
        .unwrap();
    assert_eq!(s.account.as_ref().unwrap().url, mine_url);
    assert_ne!(s.state, CaldavState::Off);
    let saved = settings_text(&files.settings);
    assert!(saved.contains(&mine_url) && saved.contains(&lab_url) && saved.contains(USER));
    assert!(
        !saved.contains(PASSWORD),
        "the password is in the settings file"
    );
    until("the first sync", || {
        m.caldav_status().state == CaldavState::Ok
    })
    .await;
    eprintln!(
        "first sync of 1 booking after signing in: {:?}",
        t0.elapsed()
    );
    let s = m.caldav_status();
    assert!(
        s.last_sync.is_some() && s.error.is_none() && s.pending == 0,
        "{s:?}"
    );
    assert_eq!(
        uids(&mine_url),
        vec![(uid(&first), "CONFIRMED".to_string())]
    );
    assert_eq!(uids(&lab_url), vec![(uid(&first), "CONFIRMED".to_string())]);
    assert!(heard
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.state == CaldavState::Ok));

    // Changes in the agent follow: a new booking appears, a cancelled one goes.
    let t1 = Instant::now();
    let second = book(&conn, 1, 4, "after signing in").await;
    until("the new booking in the collection", || {
        uids(&mine_url).iter().any(|(u, _)| *u == uid(&second))
    })
    .await;
    eprintln!("a new booking reached Radicale after {:?}", t1.elapsed());
    match conn
        .request(Request::Cancel(CancelRequest { id: first.id }))
        .await
    {
        Ok(Response::Booking(_)) => {}
        other => panic!("cancel: {other:?}"),
    }
    until("the cancelled booking gone", || {
        uids(&mine_url) == vec![(uid(&second), "CONFIRMED".to_string())]
    })
    .await;
    until("the lab's collection too", || {
        uids(&lab_url) == vec![(uid(&second), "CONFIRMED".to_string())]
    })
    .await;
    // The event relay, the feed and both collections' sync: one connection to the server.
    assert_eq!(open.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Another app started on the same settings resumes the account (the password is asked
    // again: it was not kept in the keyring); set_settings never drops the account.
    let mut settings = m.settings();
    settings.caldav = None;
    m.set_settings(settings).unwrap();
    assert!(settings_text(&files.settings).contains(&mine_url));

    // Signing out: the account leaves the settings file and the sync stops.
    m.caldav_logout().await.unwrap();
    assert_eq!(m.caldav_status().state, CaldavState::Off);
    assert!(!settings_text(&files.settings).contains("caldav"));
    let third = book(&conn, 2, 8, "after signing out").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !uids(&mine_url).iter().any(|(u, _)| *u == uid(&third)),
        "synced after signing out"
    );
    // Signing in again picks up what happened meanwhile (the state files were released).
    m.caldav_login(&mine_url, USER, None, Secret::new(PASSWORD), false)
        .await
        .unwrap();
    until("the booking made while signed out", || {
        uids(&mine_url).iter().any(|(u, _)| *u == uid(&third))
    })
    .await;
    m.caldav_logout().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_changed_on_the_server_asks_for_it_again() {
    if !have_services() {
        return;
    }
    let radicale = Radicale::start().await;
    let url = radicale.mkcalendar("gpu").await;
    let agent = agent().await;
    let app = tempfile::tempdir().unwrap();
    let files = Files {
        settings: app.path().join("settings.json"),
        last_seen: app.path().join("last-seen.json"),
    };
    let m = Manager::new(
        files,
        Arc::new(Quiet),
        Arc::new(Quiet),
        tokio::runtime::Handle::current(),
        Default::default(),
    );
    m.set_caldav_state_dir(app.path().join("state"));
    m.add("local", "This computer", Address::Unix(agent.socket()));
    m.caldav_login(&url, USER, None, Secret::new(PASSWORD), false)
        .await
        .unwrap();
    until("the first sync", || {
        m.caldav_status().state == CaldavState::Ok
    })
    .await;
    // The password changes on the server; the next write is refused.
    std::fs::write(radicale.path().join("users"), format!("{USER}:new one\n")).unwrap();
    let conn = Connection::unix(&agent.socket(), "test").await.unwrap();
    book(&conn, 0, 0, "after the change").await;
    until("the sync to ask for the password", || {
        m.caldav_status().needs_password
    })
    .await;
    let s = m.caldav_status();
    assert_eq!(s.state, CaldavState::Error);
    let error = s.error.unwrap();
    assert!(
        error.contains("refused the password") && error.contains("type the password again"),
        "{error}"
    );
    // Typing the new one syncs again.
    m.caldav_login(&url, USER, None, Secret::new("new one"), false)
        .await
        .unwrap();
    until("the sync with the new password", || {
        let s = m.caldav_status();
        s.state == CaldavState::Ok && !s.needs_password
    })
    .await;
}

/// The password kept with consent goes to the real keyring (gnome-keyring on a private D-Bus
/// session bus, as crates/client/tests/keyring.rs sets it up), under the entry the CLI reads;
/// an app started later resumes the sync from it; signing out removes it. The app's side
/// runs in a child process of this test binary whose session bus is that one.
#[test]
fn the_password_kept_with_consent_is_the_clis_keyring_entry() {
    let Some(session) = KeyringSession::start("caldav_app keyring") else {
        return;
    };
    if !have_services() {
        return;
    }
    session.run_child("keyring_app_child", "app keyring ok");
}

/// Runs inside the private session of the test above (ignored on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the_password_kept_with_consent_is_the_clis_keyring_entry in its own D-Bus session"]
async fn keyring_app_child() {
    use gpubook_client::secrets::{self, SecretError};
    if std::env::var_os("GPUBOOK_KEYRING_CHILD").is_none() {
        return;
    }
    let radicale = Radicale::start().await;
    let url = radicale.mkcalendar("gpu").await;
    let agent = agent().await;
    let conn = Connection::unix(&agent.socket(), "test").await.unwrap();
    let b = book(&conn, 0, 0, "kept in the keyring").await;
    let app = tempfile::tempdir().unwrap();
    let files = Files {
        settings: app.path().join("settings.json"),
        last_seen: app.path().join("last-seen.json"),
    };
    let start = |state: &str| {
        let m = Manager::new(
            files.clone(),
            Arc::new(Quiet),
            Arc::new(Quiet),
            tokio::runtime::Handle::current(),
            Default::default(),
        );
        m.set_caldav_state_dir(app.path().join(state));
        m
    };
    let first = start("state-1");
    first.add("local", "This computer", Address::Unix(agent.socket()));
    // A refused password is not kept, even with consent.
    first
        .caldav_login(&url, USER, None, Secret::new("wrong"), true)
        .await
        .unwrap_err();
    assert!(matches!(
        secrets::caldav_password(&url, USER),
        Err(SecretError::Missing { .. })
    ));
    first
        .caldav_login(&url, USER, None, Secret::new(PASSWORD), true)
        .await
        .unwrap();
    // The entry `gpubook caldav sync --url URL --user alice` reads.
    assert_eq!(
        secrets::caldav_password(&url, USER).unwrap().expose(),
        PASSWORD
    );
    until("the first app's sync", || {
        first.caldav_status().state == CaldavState::Ok
    })
    .await;
    // An app started later on the same settings syncs with the keyring's password (its own
    // state file: the first one still holds its lock).
    let second = start("state-2");
    second.add("local", "This computer", Address::Unix(agent.socket()));
    until("the second app's sync from the keyring", || {
        let s = second.caldav_status();
        s.state == CaldavState::Ok && !s.needs_password
    })
    .await;
    assert_eq!(uids(&url), vec![(uid(&b), "CONFIRMED".to_string())]);
    // Signing out removes the keyring entry; an app started then is signed out.
    second.caldav_logout().await.unwrap();
    assert!(matches!(
        secrets::caldav_password(&url, USER),
        Err(SecretError::Missing { .. })
    ));
    first.caldav_logout().await.unwrap();
    let third = start("state-3");
    assert_eq!(third.caldav_status().state, CaldavState::Off);
    println!("app keyring ok");
}
