//! `gpubook caldav discover` and `gpubook caldav login` given the server's address, run as the
//! real binary against a real Xandikos (from scripts/calendar-services.sh): the calendars
//! listed, one made with --create, login picking it by name (and refusing to guess), and a
//! server that is not there said to be away.

mod support;

use gpubook_testkit::require_python;
use gpubook_testkit::sshd::free_port;
use gpubook_testkit::xandikos::Xandikos;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use support::text;

/// Xandikos on 127.0.0.1 with its default calendar (and the runtime it was started on);
/// `None` (the test skips) when Xandikos is not installed and services are not required.
fn xandikos() -> Option<(Xandikos, tokio::runtime::Runtime)> {
    if !require_python(
        "calendars_found_made_and_picked_from_the_server_address",
        "xandikos",
    ) {
        return None;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let x = rt.block_on(Xandikos::start("/user/", true));
    Some((x, rt))
}

/// Runs the CLI with a home of its own, `stdin` on standard input.
fn gpubook(home: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gpubook"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_STATE_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

#[test]
fn calendars_found_made_and_picked_from_the_server_address() {
    let Some((x, _rt)) = xandikos() else { return };
    let home = tempfile::tempdir().unwrap();
    let base = x.base();
    // `caldav login` with the address, as alice, the password on stdin, and `more`.
    let login = |more: &[&str]| {
        let mut args = vec!["caldav", "login", "--url", &base, "--user", "alice"];
        args.push("--password-stdin");
        args.extend_from_slice(more);
        gpubook(home.path(), &args, "secret\n")
    };

    let o = gpubook(
        home.path(),
        &["--json", "caldav", "discover", "--url", &base],
        "",
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["found"]["home"], format!("{base}user/calendars/"), "{v}");
    let urls: Vec<&str> = v["found"]["calendars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, [format!("{base}user/calendars/calendar/")], "{v}");

    let o = gpubook(
        home.path(),
        &[
            "caldav",
            "discover",
            "--url",
            &base,
            "--create",
            "GPU bookings",
        ],
        "",
    );
    assert!(o.status.success(), "{}", text(&o));
    let made = format!("{base}user/calendars/gpu-bookings/");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("GPU bookings") && out.contains(&made),
        "{}",
        text(&o)
    );

    // login with the address and a name: that calendar is checked and chosen (nothing is
    // stored without --yes, so no keyring is needed here).
    let o = login(&["--calendar", "gpu bookings"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        err.contains(&format!("{made} is a calendar that alice may use"))
            && err.contains("nothing was stored"),
        "{}",
        text(&o)
    );

    // --create with a name already there uses it rather than making a second.
    let o = login(&["--create", "GPU bookings"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already has a calendar called GPU bookings"),
        "{}",
        text(&o)
    );
    assert!(!x.data_dir().join("user/calendars/gpu-bookings-2").exists());

    // The address alone, without a terminal to ask on: a usage error naming the calendars.
    let o = login(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is the server, not a calendar") && err.contains("\"GPU bookings\""),
        "{}",
        text(&o)
    );

    // Nothing listening: the server is away (5).
    let gone = format!("http://127.0.0.1:{}/", free_port());
    let o = gpubook(home.path(), &["caldav", "discover", "--url", &gone], "");
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
}
