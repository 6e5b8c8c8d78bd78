//! The Settings page's CalDAV discovery against a real Xandikos on 127.0.0.1 (installed by
//! scripts/calendar-services.sh): the calendars listed from the bare address, "GPU bookings"
//! made once (asking again gives the same calendar), and the errors the page shows by kind.

use gpubook_client::secrets::Secret;
use gpubook_desktop::caldav_discover::{create_calendar, discover_calendars};
use gpubook_desktop::error::{AppErrorKind, AppOnlyKind};
use gpubook_testkit::require_python;
use gpubook_testkit::sshd::free_port;
use gpubook_testkit::xandikos::Xandikos;

#[tokio::test]
async fn calendars_listed_and_made_from_the_server_address() {
    if !require_python(
        "calendars_listed_and_made_from_the_server_address",
        "xandikos",
    ) {
        return;
    }
    let x = Xandikos::start("/user/", true).await;
    let base = x.base();
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
