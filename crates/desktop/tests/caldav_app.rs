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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use gpubook_agent::clock::SystemClock;
use gpubook_agent::gpu::Source;
use gpubook_agent::server::{bind, AgentConfig};
use gpubook_client::caldav::FollowOptions;
use gpubook_client::secrets::Secret;
use gpubook_client::Connection;
use gpubook_core::time::floor_to;
use gpubook_core::{Booking, BookingState};
use gpubook_desktop::error::{AppErrorKind, AppOnlyKind};
use gpubook_desktop::notify::{Notice, Notifier};
use gpubook_desktop::{
    calendar, Address, CaldavState, CaldavStatus, EventPayload, Files, Manager, ReadingsPayload,
    ServerView, Sink,
};
use gpubook_proto::{BookRequest, CancelRequest, GpuChoice, Request, Response, WhenChoice};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;

const SERVER: &str = "lab-test";
const USER: &str = "alice";
const PASSWORD: &str = "correct horse";
const DEADLINE: Duration = Duration::from_secs(20);

fn python() -> String {
    std::env::var("GPUBOOK_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether Radicale and icalendar can be used; fails when services are required.
fn have_services() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import radicale, icalendar"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = format!(
            "{} cannot import radicale and icalendar; run scripts/calendar-services.sh",
            python()
        );
        assert!(
            std::env::var("GPUBOOK_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "GPUBOOK_REQUIRE_SERVICES=1 but {msg}"
        );
        eprintln!("SKIPPED caldav_app: {msg}");
    }
    ok
}

/// Runs Python with `args`; its stdout.
fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A real Radicale, its storage in a temporary directory, killed on drop.
struct Radicale {
    dir: TempDir,
    port: u16,
    child: Child,
}

impl Radicale {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(dir.path().join("users"), format!("{USER}:{PASSWORD}\n")).unwrap();
        std::fs::write(
            dir.path().join("config"),
            format!(
                "[server]\nhosts = 127.0.0.1:{port}\n\
                 [auth]\ntype = htpasswd\nhtpasswd_filename = {users}\n\
                 htpasswd_encryption = plain\ndelay = 0\n\
                 [storage]\nfilesystem_folder = {storage}\n\
                 [rights]\ntype = owner_only\n\
                 [logging]\nlevel = warning\n",
                users = dir.path().join("users").display(),
                storage = dir.path().join("collections").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("radicale.log")).unwrap();
        let mut child = Command::new(python())
            .args(["-m", "radicale", "--config"])
            .arg(dir.path().join("config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start Radicale");
        let until = Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(s) = child.try_wait().unwrap() {
                panic!(
                    "Radicale exited with {s}: {}",
                    std::fs::read_to_string(dir.path().join("radicale.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < until, "Radicale did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { dir, port, child }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{USER}/{name}/", self.port)
    }

    /// Creates calendar `name` as a calendar app would (MKCALENDAR); its URL.
    fn mkcalendar(&self, name: &str) -> String {
        let url = self.url(name);
        let status = run_python(
            r#"
import sys, base64, urllib.request
url, user, pw = sys.argv[1:4]
auth = base64.b64encode(f"{user}:{pw}".encode()).decode()
req = urllib.request.Request(url, method="MKCALENDAR", headers={"Authorization": "Basic " + auth})
print(urllib.request.urlopen(req).status)
"#,
            &[&url, USER, PASSWORD],
        );
        assert_eq!(status.trim(), "201", "MKCALENDAR {url}");
        url
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.dir.path();
    }
}

/// The collection's events, read back over CalDAV (a calendar-query REPORT) and parsed by
/// Python's icalendar: one `{uid, status, summary, href}` per VEVENT.
fn read_back(url: &str) -> Vec<Value> {
    let out = run_python(
        r#"
import sys, json, base64, urllib.request, xml.etree.ElementTree as ET
from icalendar import Calendar
url, user, pw = sys.argv[1:4]
body = b'''<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
<D:prop><D:getetag/><C:calendar-data/></D:prop>
<C:filter><C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>'''
auth = base64.b64encode(f"{user}:{pw}".encode()).decode()
req = urllib.request.Request(url, data=body, method="REPORT", headers={
    "Depth": "1", "Content-Type": "application/xml", "Authorization": "Basic " + auth})
ns = {"D": "DAV:", "C": "urn:ietf:params:xml:ns:caldav"}
out = []
for r in ET.fromstring(urllib.request.urlopen(req).read()).findall("D:response", ns):
    data = r.find(".//C:calendar-data", ns)
    if data is None or not data.text:
        continue
    for ev in Calendar.from_ical(data.text).walk("VEVENT"):
        out.append({"uid": str(ev.get("UID")), "status": str(ev.get("STATUS")),
                    "summary": str(ev.get("SUMMARY")), "href": r.find("D:href", ns).text})
print(json.dumps(out))
"#,
        &[url, USER, PASSWORD],
    );
    serde_json::from_str(&out).expect("the read-back is JSON")
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

struct Agent {
    dir: TempDir,
    _stop: oneshot::Sender<()>,
}

async fn agent() -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let a = bind(
        AgentConfig {
            state_dir: dir.path().join("state"),
            socket: dir.path().join("agent.sock"),
            gpus: Source::Sim(4),
            policy: None,
            server_name: SERVER.into(),
            shared: false,
            sample_interval: Duration::from_secs(5),
        },
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(a.run(async move {
        let _ = rx.await;
    }));
    Agent { dir, _stop: tx }
}

impl Agent {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }
}

fn slot(n: i64) -> DateTime<Utc> {
    floor_to(Utc::now(), ChronoDuration::minutes(15))
        + ChronoDuration::days(1)
        + ChronoDuration::minutes(15 * n)
}

async fn book(conn: &Connection, gpu: u32, from: i64, title: &str) -> Booking {
    match conn
        .request(Request::Book(BookRequest {
            gpus: GpuChoice::Named {
                gpus: vec![gpu.to_string()],
            },
            when: WhenChoice::At {
                start: slot(from),
                end: slot(from + 2),
            },
            title: title.into(),
            job: None,
        }))
        .await
    {
        Ok(Response::Booking(b)) => b.booking,
        other => panic!("expected a booking, got {other:?}"),
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let radicale = Radicale::start();
    let mine_url = radicale.mkcalendar("gpu");
    let lab_url = radicale.mkcalendar("lab");
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
    let radicale = Radicale::start();
    let url = radicale.mkcalendar("gpu");
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
    std::fs::write(
        radicale.dir.path().join("users"),
        format!("{USER}:new one\n"),
    )
    .unwrap();
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

/// Kills the session's daemons on drop.
struct Session {
    children: Vec<Child>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn have_tool(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The password kept with consent goes to the real keyring (gnome-keyring on a private D-Bus
/// session bus, as crates/client/tests/keyring.rs sets it up), under the entry the CLI reads;
/// an app started later resumes the sync from it; signing out removes it. The app's side
/// runs in a child process of this test binary whose session bus is that one.
#[test]
fn the_password_kept_with_consent_is_the_clis_keyring_entry() {
    let missing: Vec<&str> = ["dbus-daemon", "dbus-send", "gnome-keyring-daemon"]
        .into_iter()
        .filter(|t| !have_tool(t))
        .collect();
    if !missing.is_empty() {
        let msg = format!(
            "{} missing; run scripts/calendar-services.sh",
            missing.join(", ")
        );
        assert!(
            std::env::var("GPUBOOK_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "GPUBOOK_REQUIRE_SERVICES=1 but {msg}"
        );
        eprintln!("SKIPPED caldav_app keyring: {msg}");
        return;
    }
    if !have_services() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let runtime = home.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let env = [
        ("HOME", home.path().to_path_buf()),
        ("XDG_DATA_HOME", home.path().join("data")),
        ("XDG_CONFIG_HOME", home.path().join("config")),
        ("XDG_STATE_HOME", home.path().join("state")),
        ("XDG_RUNTIME_DIR", runtime.clone()),
    ];
    let mut session = Session {
        children: Vec::new(),
    };
    let mut bus = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .arg(format!(
            "--address=unix:path={}",
            runtime.join("bus").display()
        ))
        .envs(env.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dbus-daemon");
    let mut address = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(bus.stdout.take().unwrap()),
        &mut address,
    )
    .unwrap();
    session.children.push(bus);
    let address = address.trim().to_string();
    assert!(address.starts_with("unix:"), "dbus-daemon said {address:?}");
    let mut keyring = Command::new("gnome-keyring-daemon")
        .args(["--foreground", "--unlock", "--components=secrets"])
        .envs(env.iter().cloned())
        .env("DBUS_SESSION_BUS_ADDRESS", &address)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gnome-keyring-daemon");
    std::io::Write::write_all(&mut keyring.stdin.take().unwrap(), b"keyring password").unwrap();
    session.children.push(keyring);
    let until = Instant::now() + DEADLINE;
    loop {
        let owned = Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .output()
            .unwrap();
        if String::from_utf8_lossy(&owned.stdout).contains("boolean true") {
            break;
        }
        assert!(Instant::now() < until, "gnome-keyring-daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["keyring_app_child", "--exact", "--ignored", "--nocapture"])
        .envs(env.iter().cloned())
        .env("DBUS_SESSION_BUS_ADDRESS", &address)
        .env("GPUBOOK_KEYRING_CHILD", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the keyring child failed:\n{text}");
    assert!(text.contains("app keyring ok"), "{text}");
}

/// Runs inside the private session of the test above (ignored on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the_password_kept_with_consent_is_the_clis_keyring_entry in its own D-Bus session"]
async fn keyring_app_child() {
    use gpubook_client::secrets::{self, SecretError};
    if std::env::var_os("GPUBOOK_KEYRING_CHILD").is_none() {
        return;
    }
    let radicale = Radicale::start();
    let url = radicale.mkcalendar("gpu");
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
