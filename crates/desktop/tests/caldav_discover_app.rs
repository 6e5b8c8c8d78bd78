//! The Settings page's CalDAV discovery against a real Xandikos on 127.0.0.1 (installed by
//! scripts/calendar-services.sh): the calendars listed from the bare address, "GPU bookings"
//! made once (asking again gives the same calendar), and the errors the page shows by kind.

use gpubook_client::secrets::Secret;
use gpubook_desktop::caldav_discover::{create_calendar, discover_calendars};
use gpubook_desktop::error::{AppErrorKind, AppOnlyKind};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Xandikos child, ended on drop (before its directory goes).
struct Running {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn calendars_listed_and_made_from_the_server_address() {
    let python = std::env::var("GPUBOOK_PYTHON").unwrap_or_else(|_| "python3".into());
    let installed = Command::new(&python)
        .args(["-c", "import xandikos"])
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        let required = std::env::var("GPUBOOK_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "GPUBOOK_REQUIRE_SERVICES=1 but no xandikos in {python}"
        );
        eprintln!("SKIPPED: no xandikos; run scripts/calendar-services.sh");
        return;
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(&python)
        .args(["-m", "xandikos.web", "--defaults", "--no-detect-systemd"])
        .args(["-l", "127.0.0.1", "-p", &port.to_string()])
        .arg("-d")
        .arg(dir.path().join("data"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _x = Running { child, _dir: dir };
    let until = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < until, "Xandikos did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let base = format!("http://127.0.0.1:{port}/");
    let pw = || Secret::new("secret");

    let found = discover_calendars(&base, "alice", pw()).await.unwrap();
    assert_eq!(found.home, format!("{base}user/calendars/"));
    let names: Vec<(&str, bool)> = found
        .calendars
        .iter()
        .map(|c| (c.name.as_str(), c.events))
        .collect();
    assert_eq!(names, [("calendar", true)]);

    let made = create_calendar(&base, "alice", pw(), "GPU bookings")
        .await
        .unwrap();
    assert_eq!(made.url, format!("{base}user/calendars/gpu-bookings/"));
    assert_eq!((made.name.as_str(), made.events), ("GPU bookings", true));
    let again = create_calendar(&base, "alice", pw(), "gpu bookings")
        .await
        .unwrap();
    assert_eq!(again.url, made.url, "asked twice, made once");
    let found = discover_calendars(&base, "alice", pw()).await.unwrap();
    assert_eq!(found.calendars.len(), 2);

    // The errors, by the kind the page acts on.
    let e = create_calendar(&base, "alice", pw(), "  ")
        .await
        .unwrap_err();
    assert!(e.message.contains("name"), "{e:?}");
    let away = format!("http://127.0.0.1:{}/", free_port());
    let e = discover_calendars(&away, "alice", pw()).await.unwrap_err();
    assert_eq!(e.kind, AppErrorKind::App(AppOnlyKind::Unreachable), "{e:?}");
    assert!(
        e.message.starts_with("Cannot reach the CalDAV server"),
        "{e:?}"
    );
    let e = discover_calendars("ftp://x", "alice", pw())
        .await
        .unwrap_err();
    assert!(e.message.contains("not a server address"), "{e:?}");
}
