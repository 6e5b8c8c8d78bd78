//! Fixtures for the calendar tests: a real Radicale on 127.0.0.1 with its storage in a
//! temporary directory and htpasswd logins, an agent in the test process, and Python's
//! `icalendar` package as the independent parser (with its own CalDAV REPORT to read a
//! collection back).
//!
//! A test that needs Radicale or Python's packages fails when `GPUBOOK_REQUIRE_SERVICES=1`
//! (CI, after `scripts/calendar-services.sh`) and they are missing; elsewhere it says why and
//! passes without running.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use gpubook_agent::clock::SystemClock;
use gpubook_agent::gpu::Source;
use gpubook_agent::server::{bind, AgentConfig};
use gpubook_agent::state::State;
use gpubook_client::Connection;
use gpubook_core::time::floor_to;
use gpubook_core::{Actor, Booking, BookingId, GpuSelection, GpuUuid, Interval, JobSpec, Op, Role};
use gpubook_proto::{
    BookRequest, CancelRequest, GpuChoice, MoveRequest, Request, Response, WhenChoice,
};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// The agent's server name in these tests.
pub const SERVER: &str = "lab-test";
/// The CalDAV account.
pub const USER: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "correct horse";
/// How long any awaited condition may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Whether missing services fail the test (CI) rather than skip it.
pub fn required() -> bool {
    std::env::var("GPUBOOK_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The Python that has `radicale` and `icalendar`.
pub fn python() -> String {
    std::env::var("GPUBOOK_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether `python -c "import MODULES"` works; fails the test when it does not and services
/// are required, else prints why the test does nothing.
pub fn have_python(modules: &str, test: &str) -> bool {
    let ok = Command::new(python())
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = format!(
            "{test}: {} cannot import {modules}; run scripts/calendar-services.sh",
            python()
        );
        assert!(!required(), "GPUBOOK_REQUIRE_SERVICES=1 but {msg}");
        eprintln!("SKIPPED {msg}");
    }
    ok
}

/// Points on the 15-minute grid from tomorrow: in the future for the whole run.
pub fn slot(n: i64) -> DateTime<Utc> {
    floor_to(Utc::now(), ChronoDuration::minutes(15))
        + ChronoDuration::days(1)
        + ChronoDuration::minutes(15 * n)
}

/// An agent in the test process (four simulated GPUs, a policy that sends bookings over two
/// hours to an admin), stopped on drop.
#[derive(Debug)]
pub struct Agent {
    /// State, socket, policy.
    dir: TempDir,
    /// The agent's state, to act as other people.
    pub state: Arc<State>,
    /// Stops it.
    stop: Option<oneshot::Sender<()>>,
}

impl Agent {
    /// Starts one.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let policy = dir.path().join("policy.toml");
        std::fs::write(
            &policy,
            "max_booking = \"2h\"\nover_policy = \"approval\"\n",
        )
        .unwrap();
        let agent = bind(
            AgentConfig {
                state_dir: dir.path().join("state"),
                socket: dir.path().join("agent.sock"),
                gpus: Source::Sim(4),
                policy: Some(policy),
                server_name: SERVER.into(),
                shared: false,
                sample_interval: Duration::from_secs(5),
            },
            Arc::new(SystemClock),
        )
        .await
        .expect("bind the agent");
        let state = agent.state();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(agent.run(async move {
            let _ = rx.await;
        }));
        Self {
            dir,
            state,
            stop: Some(tx),
        }
    }

    /// Its socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    /// A connection as the test's own user.
    pub async fn connect(&self) -> Connection {
        Connection::unix(&self.socket(), "calendar-test")
            .await
            .expect("connect to the agent")
    }

    /// A live session to the agent, and its first follower's stream (the feed's and the
    /// CalDAV sync's source).
    pub fn live(
        &self,
    ) -> (
        gpubook_client::live::LiveSession,
        gpubook_client::live::LiveEvents,
    ) {
        let socket = self.socket();
        gpubook_client::live::LiveSession::start(
            move || {
                let s = socket.clone();
                async move { Connection::unix(&s, "calendar-test").await }
            },
            Default::default(),
        )
    }

    /// Applies `op` as `user` with `role`, as if they had asked.
    pub async fn as_user(&self, user: &str, role: Role, op: Op) -> Booking {
        let state = self.state.clone();
        let actor = Actor {
            user: user.into(),
            role,
        };
        tokio::task::spawn_blocking(move || state.change(&actor, op))
            .await
            .unwrap()
            .expect("the change is accepted")
            .first()
            .expect("the change wrote an event")
            .booking
            .clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A booking of the simulated GPUs `gpus` from slot `from` to slot `to`.
pub async fn book(conn: &Connection, gpus: &[u32], from: i64, to: i64, title: &str) -> Booking {
    book_with(conn, gpus, from, to, title, None).await
}

/// [`book`] with a job.
pub async fn book_with(
    conn: &Connection,
    gpus: &[u32],
    from: i64,
    to: i64,
    title: &str,
    command: Option<&str>,
) -> Booking {
    answer(
        conn.request(Request::Book(BookRequest {
            gpus: GpuChoice::Named {
                gpus: gpus.iter().map(|g| g.to_string()).collect(),
            },
            when: WhenChoice::At {
                start: slot(from),
                end: slot(to),
            },
            title: title.into(),
            job: command.map(job),
        }))
        .await,
    )
}

/// A job running `command`.
pub fn job(command: &str) -> JobSpec {
    JobSpec {
        command: command.into(),
        cwd: None,
        env: Default::default(),
        end_signal: None,
        grace_secs: None,
        keep_slot: false,
        ..Default::default()
    }
}

/// Moves booking `id` to slots `from`..`to`.
pub async fn move_to(conn: &Connection, id: BookingId, from: i64, to: i64) -> Booking {
    answer(
        conn.request(Request::Move(MoveRequest {
            id,
            start: slot(from),
            end: slot(to),
            gpus: None,
        }))
        .await,
    )
}

/// Cancels booking `id`.
pub async fn cancel(conn: &Connection, id: BookingId) -> Booking {
    answer(conn.request(Request::Cancel(CancelRequest { id })).await)
}

fn answer(r: Result<Response, gpubook_client::ClientError>) -> Booking {
    match r {
        Ok(Response::Booking(b)) => b.booking,
        other => panic!("expected a booking, got {other:?}"),
    }
}

/// A booking op for other people: GPUs by index on the test server, slots `from`..`to`.
pub fn book_op(gpus: &[u32], from: i64, to: i64, title: &str, command: Option<&str>) -> Op {
    Op::Book {
        gpus: GpuSelection::Named(
            gpus.iter()
                .map(|i| GpuUuid(format!("SIM-{SERVER}-{i}")))
                .collect(),
        ),
        when: gpubook_core::When::At(Interval::new(slot(from), slot(to)).unwrap()),
        title: title.into(),
        job: command.map(job),
    }
}

/// A real Radicale on 127.0.0.1, its storage in a temporary directory, killed on drop.
#[derive(Debug)]
pub struct Radicale {
    /// Config, users, storage, log.
    dir: TempDir,
    /// Its port, kept across restarts.
    pub port: u16,
    /// The running server.
    child: Option<Child>,
}

impl Radicale {
    /// Starts one with the account [`USER`] / [`PASSWORD`].
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
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
        let mut r = Self {
            dir,
            port,
            child: None,
        };
        r.restart().await;
        r
    }

    /// Starts it again on the same port and storage.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "Radicale already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("radicale.log"))
            .unwrap();
        self.child = Some(
            Command::new(python())
                .args(["-m", "radicale", "--config"])
                .arg(self.dir.path().join("config"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start Radicale"),
        );
        let until = Instant::now() + DEADLINE;
        let http = reqwest::Client::new();
        loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("Radicale exited with {s}:\n{}", self.log());
            }
            if http.get(self.base()).send().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < until,
                "Radicale did not answer:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills it (SIGKILL: no goodbye to clients) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("radicale.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The URL of [`USER`]'s collection `name`.
    pub fn url(&self, name: &str) -> String {
        format!("{}{USER}/{name}/", self.base())
    }

    /// The files Radicale stores for collection `name`.
    pub fn stored(&self, name: &str) -> usize {
        std::fs::read_dir(
            self.dir
                .path()
                .join("collections/collection-root")
                .join(USER)
                .join(name),
        )
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".ics"))
                .count()
        })
        .unwrap_or(0)
    }

    /// Creates the calendar collection `name` (as a calendar app would).
    pub async fn mkcalendar(&self, name: &str) -> String {
        let url = self.url(name);
        let r = reqwest::Client::new()
            .request(reqwest::Method::from_bytes(b"MKCALENDAR").unwrap(), &url)
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "MKCALENDAR {url}");
        url
    }

    /// PUTs `ics` at `url` as another calendar app would, with `If-Match` when given; returns
    /// the status.
    pub async fn put(&self, url: &str, ics: &str, if_match: Option<&str>) -> u16 {
        let mut req = reqwest::Client::new()
            .put(url)
            .basic_auth(USER, Some(PASSWORD))
            .header("Content-Type", "text/calendar; charset=utf-8")
            .body(ics.to_string());
        if let Some(e) = if_match {
            req = req.header("If-Match", e);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// GETs `url`: its ETag and text.
    pub async fn get(&self, url: &str) -> (String, String) {
        let r = reqwest::Client::new()
            .get(url)
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {url}: {}", r.status());
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        (etag, r.text().await.unwrap())
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Python that turns an icalendar VEVENT into JSON.
const PY_EVENT: &str = r#"
import sys, json
from icalendar import Calendar
def event_json(ev, **extra):
    d = dict(extra)
    for k in ("UID", "SUMMARY", "DESCRIPTION", "LOCATION", "STATUS", "X-GPUBOOK-SERVER"):
        d[k.lower()] = str(ev.get(k)) if ev.get(k) is not None else None
    d["sequence"] = int(ev.get("SEQUENCE", 0))
    d["dtstart"] = ev.decoded("DTSTART").isoformat() if "DTSTART" in ev else None
    d["dtend"] = ev.decoded("DTEND").isoformat() if "DTEND" in ev else None
    d["dtstamp"] = "DTSTAMP" in ev
    d["errors"] = [str(e) for e in getattr(ev, "errors", [])]
    return d
"#;

/// Reads a collection back with Python: its own CalDAV REPORT (urllib), each object parsed
/// by `icalendar`. One JSON object per VEVENT, with `href` and `etag`.
pub fn read_back(url: &str) -> Vec<Value> {
    let script = format!(
        "{PY_EVENT}{}",
        r#"
import base64, urllib.request, xml.etree.ElementTree as ET
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
    etag = r.find(".//D:getetag", ns)
    for ev in Calendar.from_ical(data.text).walk("VEVENT"):
        out.append(event_json(ev, href=r.find("D:href", ns).text,
                              etag=etag.text if etag is not None else None))
print(json.dumps(out))
"#
    );
    let out = run_python(&script, &[url, USER, PASSWORD], b"");
    serde_json::from_str::<Vec<Value>>(&out).expect("the read-back is JSON")
}

/// Validates a whole VCALENDAR with Python: CRLF lines of at most 75 octets, VERSION and
/// PRODID, UID, DTSTAMP and DTSTART in every VEVENT, nothing `icalendar` complains about.
/// Returns `{errors, events, name, method}`.
pub fn validate(ics: &str) -> Value {
    let script = format!(
        "{PY_EVENT}{}",
        r#"
raw = sys.stdin.buffer.read()
errors = []
if b"\n" in raw.replace(b"\r\n", b""):
    errors.append("a line ends without CR")
for i, line in enumerate(raw.split(b"\r\n")):
    if len(line) > 75:
        errors.append(f"line {i + 1} is {len(line)} octets")
cal = Calendar.from_ical(raw)
errors += [str(e) for e in getattr(cal, "errors", [])]
for p in ("VERSION", "PRODID"):
    if p not in cal:
        errors.append(f"no {p}")
events = []
for ev in cal.walk("VEVENT"):
    for p in ("UID", "DTSTAMP", "DTSTART"):
        if p not in ev:
            errors.append(f"a VEVENT without {p}")
    e = event_json(ev)
    errors += e["errors"]
    events.append(e)
print(json.dumps({"errors": errors, "events": events,
                  "name": str(cal.get("X-WR-CALNAME", "")), "method": str(cal.get("METHOD", ""))}))
"#
    );
    serde_json::from_str(&run_python(&script, &[], ics.as_bytes())).expect("JSON")
}

fn run_python(script: &str, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The events in `events` with UID `uid`.
pub fn with_uid<'a>(events: &'a [Value], uid: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["uid"] == uid).collect()
}

/// Polls `cond` until it holds, failing after [`DEADLINE`].
pub async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut cond: impl FnMut() -> F,
) {
    let until = Instant::now() + DEADLINE;
    while !cond().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A directory for sync state.
pub fn state_dir() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// `path` exists and holds `needle`.
pub fn file_has(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle))
}
