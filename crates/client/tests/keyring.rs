//! The CalDAV password through the real keyring: a private D-Bus session bus with
//! gnome-keyring-daemon on it, unlocked with a known password, in a temporary home (the
//! testkit's [`KeyringSession`]); the keyring code runs in a child process of this test binary
//! whose session bus is that one (the keyring library finds the bus through
//! `DBUS_SESSION_BUS_ADDRESS`, which a test must not change in its own, threaded, process).

use gpubook_client::secrets::{self, Secret, SecretError};
use gpubook_testkit::keyring::KeyringSession;

const URL: &str = "https://dav.example.org/calendars/alice/gpu/";

#[test]
fn the_password_round_trips_through_the_real_keyring() {
    let Some(session) = KeyringSession::start("keyring") else {
        return;
    };
    session.run_child("keyring_child", "keyring round trip ok");
    // The secret is in gnome-keyring's own file, not in the clear.
    let stored = session.stored();
    assert!(!stored.is_empty(), "gnome-keyring wrote no keyring");
    assert!(!stored.windows(9).any(|w| w == b"s3cret pw"));
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
