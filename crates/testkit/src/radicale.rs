//! A real Radicale (CalDAV server) on 127.0.0.1 with its storage in a temporary directory and
//! an htpasswd login, and Python's `icalendar` package as the independent reader (with its
//! own CalDAV REPORT to read a collection back). A test asks
//! [`crate::require_python`]`(test, "radicale, icalendar")` first.

use crate::wait::DEADLINE;
use serde_json::Value;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The CalDAV account.
pub const USER: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "correct horse";

/// The Python that has `radicale` and `icalendar`: `$GPUBOOK_PYTHON`, else python3.
pub fn python() -> String {
    std::env::var("GPUBOOK_PYTHON").unwrap_or_else(|_| "python3".into())
}

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

    /// Freezes it (SIGSTOP) where it is: what it has stored stays as it is until it is
    /// stopped. A test that stops it "mid-sync" freezes it first to see how far it got.
    pub fn freeze(&self) {
        if let Some(c) = &self.child {
            // SAFETY: kill with the pid of a child this fixture started and has not reaped.
            let rc = unsafe { libc::kill(c.id() as i32, libc::SIGSTOP) };
            assert_eq!(
                rc,
                0,
                "SIGSTOP Radicale: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("radicale.log")).unwrap_or_default()
    }

    /// Its directory: `config`, `users` (htpasswd), `collections/`, `radicale.log`.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
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

/// Runs Python `script` with `args`, `stdin` on its standard input: its stdout (the test
/// fails when Python does).
pub fn run_python(script: &str, args: &[&str], stdin: &[u8]) -> String {
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
