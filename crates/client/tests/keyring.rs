//! The CalDAV password through the real keyring: a private D-Bus session bus with
//! gnome-keyring-daemon on it, unlocked with a known password, in a temporary home; the
//! keyring code runs in a child process of this test binary whose session bus is that one
//! (the keyring library finds the bus through `DBUS_SESSION_BUS_ADDRESS`, which a test must
//! not change in its own, threaded, process).

use gpubook_client::secrets::{self, Secret, SecretError};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const URL: &str = "https://dav.example.org/calendars/alice/gpu/";

/// Kills the session's daemons on drop.
struct Session {
    /// dbus-daemon and gnome-keyring-daemon.
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

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_password_round_trips_through_the_real_keyring() {
    let missing: Vec<&str> = ["dbus-daemon", "dbus-send", "gnome-keyring-daemon"]
        .into_iter()
        .filter(|t| !have(t))
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
        eprintln!("SKIPPED keyring: {msg}");
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
    BufReader::new(bus.stdout.take().unwrap())
        .read_line(&mut address)
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
    // The login keyring is created with this password and unlocked.
    keyring
        .stdin
        .take()
        .unwrap()
        .write_all(b"keyring password")
        .unwrap();
    session.children.push(keyring);
    let until = Instant::now() + Duration::from_secs(20);
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
        .args(["keyring_child", "--exact", "--ignored", "--nocapture"])
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
    assert!(text.contains("keyring round trip ok"), "{text}");
    // The secret is in gnome-keyring's own file, not in the clear.
    let stored = std::fs::read_dir(home.path().join("data/keyrings"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect::<Vec<_>>();
    assert!(!stored.is_empty(), "gnome-keyring wrote no keyring");
    assert!(stored
        .iter()
        .all(|b| !b.windows(9).any(|w| w == b"s3cret pw")));
}

/// Runs inside the private session of the test above (ignored on its own).
#[test]
#[ignore = "run by the_password_round_trips_through_the_real_keyring in its own D-Bus session"]
fn keyring_child() {
    if std::env::var_os("GPUBOOK_KEYRING_CHILD").is_none() {
        return;
    }
    assert!(matches!(
        secrets::caldav_password(URL, "alice"),
        Err(SecretError::Missing { .. })
    ));
    secrets::store_caldav_password(URL, "alice", &Secret::new("first")).unwrap();
    secrets::store_caldav_password(URL, "alice", &Secret::new("s3cret pw")).unwrap();
    assert_eq!(
        secrets::caldav_password(URL, "alice").unwrap().expose(),
        "s3cret pw"
    );
    // Another account, or the same user at another server, is another entry.
    let e = secrets::caldav_password(URL, "bob").unwrap_err();
    assert!(e.to_string().contains("gpubook caldav login"), "{e}");
    assert!(secrets::caldav_password("https://other.example.org/cal/", "alice").is_err());
    assert!(secrets::forget_caldav_password(URL, "alice").unwrap());
    assert!(!secrets::forget_caldav_password(URL, "alice").unwrap());
    assert!(matches!(
        secrets::caldav_password(URL, "alice"),
        Err(SecretError::Missing { .. })
    ));
    secrets::store_caldav_password(URL, "alice", &Secret::new("s3cret pw")).unwrap();
    println!("keyring round trip ok");
}
