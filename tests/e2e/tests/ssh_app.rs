//! The app's way to a lab server, clicked through in the built app (tauri-driver and
//! WebKitWebDriver under Xvfb) against a real sshd on 127.0.0.1 and a real Unix user who logs
//! in with a password, with a real D-Bus session holding an unlocked gnome-keyring and dunst:
//! - "Add server" offers the Host of the person's ~/.ssh/config; added, the unknown host key
//!   is shown with its fingerprint (the sshd's, as `ssh-keygen -lf` prints it) and accepted;
//! - the password is asked for in the app's dialog: a wrong one is refused there and asked
//!   again, the right one adds the server: the agent is put into the user's account (with
//!   simulated GPUs, the server has none), its GPUs are on the calendar, and a booking
//!   dragged over both is in that agent, owned by the user (read back with the CLI as the
//!   user on the server);
//! - the server's sshd restarted with a new host key: the server is refused, and the
//!   refusal reads as a person would see it (the key changed, the new fingerprint, what to
//!   do), on the server list and in a notification;
//! - the old key back: the app reconnects by itself with the password typed for this run;
//! - the user's password changed on the server: the login is refused, "Sign in…" is offered,
//!   the old password is refused in its dialog and the new one connects, the booking still
//!   there;
//! - no password reaches a file of the person's home; a screenshot at each step.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as ChronoDuration, DurationRound, Utc};
use gpubook_e2e::*;
use gpubook_testkit::keyring::KeyringSession;
use gpubook_testkit::require::{missing, Need};
use gpubook_testkit::sshd::{self, Sshd, User};
use gpubook_testkit::users::runnable_by_all;
use serde_json::{json, Value};

/// This test, as the require-or-skip rule names it.
const E2E: &str = "the app's SSH end-to-end test";
/// The Host of the person's ~/.ssh/config.
const HOST: &str = "gpu-lab";
const PASSWORD: &str = "first lab password";
const NEW_PASSWORD: &str = "second lab password";

/// The text of the first element matching `selector`, if any.
fn text(d: &Driver, selector: &str) -> Option<String> {
    d.exec(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
        json!([selector]),
    )
    .as_str()
    .map(str::to_string)
}

/// The server list's entry for `id`: its state, its text, its detail, whether it offers
/// "Sign in…" and whether it shows a refused host key.
fn server_entry(d: &Driver, id: &str) -> Value {
    d.exec(
        "const e = document.querySelector(`[data-testid=server-status][data-server=\"${arguments[0]}\"]`); if (!e) return null; const dt = e.querySelector('.detail'); return {state: e.dataset.state, text: e.textContent.replace(/\\s+/g, ' ').trim(), detail: dt ? dt.textContent.replace(/\\s+/g, ' ').trim() : null, signIn: !!e.querySelector('[data-testid=sign-in]'), hostKey: !!e.querySelector('[data-testid=host-key-changed]')};",
        json!([id]),
    )
}

/// Waits until the open password dialog says that what was typed was not accepted; its text.
fn refused_in_dialog(d: &Driver, what: &str) -> String {
    until(what, 30, || {
        d.find_all("[data-testid=\"secret-refused\"]")
            .first()
            .and(text(d, "[data-testid=\"secret-dialog\"]"))
    })
    .split_whitespace()
    .collect::<Vec<_>>()
    .join(" ")
}

/// Types `secret` into the open password dialog and sends it.
fn send_secret(d: &Driver, secret: &str) {
    let input = d.wait_for("[data-testid=\"secret-dialog\"] [name=\"secret\"]", 10);
    d.type_into(&input, secret);
    d.click(&d.wait_for("[data-testid=\"secret-submit\"]", 5));
}

/// The socket of `user`'s personal agent (from its command line).
fn personal_socket(user: &User) -> Option<PathBuf> {
    let out = Command::new("pgrep")
        .args(["-u", &user.name, "-f", "gpubook-agent.* serve"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let i = args.iter().position(|a| *a == b"--socket")?;
            Some(PathBuf::from(
                String::from_utf8_lossy(args.get(i + 1)?).into_owned(),
            ))
        })
}

/// `gpubook ls` as `user` on the server, against their own agent.
fn ls_as(cli: &Path, user: &User) -> Vec<Value> {
    let socket = personal_socket(user).expect("the user's agent runs");
    let out = Command::new("runuser")
        .args(["-u", &user.name, "--"])
        .arg(cli)
        .arg("--server")
        .arg(format!("unix:{}", socket.display()))
        .args(["--json", "ls"])
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "gpubook ls as {}: {}",
        user.name,
        String::from_utf8_lossy(&out.stderr)
    );
    bookings(&serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(p),
                Ok(t) if t.is_file() => {
                    let bytes = std::fs::read(&p).unwrap_or_default();
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        found.push(p);
                    }
                }
                _ => {}
            }
        }
    }
    found
}

#[test]
fn add_a_lab_server_over_ssh_book_there_and_see_its_refusals() {
    if !enabled(E2E) {
        return;
    }
    // sshd switches to the user who logs in, and the user is made here: root. Under
    // GPUBOOK_REQUIRE_SERVICES a missing part fails the run, as for the other services.
    if !gpubook_testkit::require::is_root() {
        missing(
            E2E,
            Need::Service,
            "not root (sshd and a Unix user need it)",
            "run it as root",
        );
        return;
    }
    if !sshd::available(E2E) {
        return;
    }
    let Some(bins) = binaries_and_tools(
        E2E,
        &[
            "Xvfb",
            "dbus-daemon",
            "dbus-monitor",
            "dunst",
            "tauri-driver",
            "WebKitWebDriver",
            "runuser",
            "pgrep",
            "ssh",
        ],
    ) else {
        return;
    };
    // The person's session: a D-Bus bus with an unlocked gnome-keyring, in their own home.
    let Some(keyring) = KeyringSession::start(E2E) else {
        return;
    };
    let shots = screenshots().join("ssh");
    std::fs::create_dir_all(&shots).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cli = runnable_by_all(&bins.cli, dir);

    // The lab server: sshd, and a user who logs in with a password (no key of theirs).
    let mut sshd = Sshd::start("");
    let user = User::fresh("gpb-ssh-e2eapp");
    user.set_password(PASSWORD);
    let old_fingerprint = sshd.fingerprint();

    // The person's home: ~/.ssh/config names the lab server.
    let home = keyring.home.path().to_path_buf();
    let ssh_dir = home.join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(
        ssh_dir.join("config"),
        format!(
            "Host {HOST}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  ConnectTimeout 5\n",
            sshd.port, user.name
        ),
    )
    .unwrap();
    let known_hosts = ssh_dir.join("known_hosts");

    let (_x, display) = xvfb();
    let bus = keyring.address.clone();
    let _dunst = Proc::spawn(
        "dunst",
        Command::new("dunst")
            .env("DISPLAY", &display)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    until("dunst on the bus", 15, || {
        bus_has(&bus, "org.freedesktop.Notifications").then_some(())
    });
    let monitor_log = shots.join("notifications.log");
    let _monitor = Proc::spawn(
        "dbus-monitor",
        Command::new("dbus-monitor")
            .env("DBUS_SESSION_BUS_ADDRESS", &bus)
            .args([
                "--session",
                "interface='org.freedesktop.Notifications',member='Notify'",
            ])
            .stdout(std::fs::File::create(&monitor_log).unwrap())
            .stderr(Stdio::null()),
    );

    // This computer: an agent of the test's; the lab server's agent is the app's to deploy.
    let (_local, socket) = start_agent(&bins.agent, dir, "e2e-ssh-local", false, &shots);
    let mut env: Vec<(OsString, OsString)> = keyring
        .env()
        .into_iter()
        .map(|(k, v)| (k.into(), v.into_os_string()))
        .collect();
    for (k, v) in [
        ("GPUBOOK_SOCKET", socket.clone().into_os_string()),
        ("GPUBOOK_AGENT_BINARY", bins.agent.clone().into_os_string()),
        // The lab server has no GPU: the deployed agent simulates two.
        ("GPUBOOK_REMOTE_GPUS", "sim:2".into()),
        // No ssh-agent: the password is the way in.
        ("SSH_AUTH_SOCK", home.join("no-agent.sock").into_os_string()),
        ("XDG_DOWNLOAD_DIR", dir.join("downloads").into_os_string()),
    ] {
        env.push((k.into(), v));
    }
    let port = 5444 + (std::process::id() % 1000) as u16;
    let (_driver, url) = tauri_driver(port, &display, &bus, env, &shots, "app");
    let d = open_app(&url, &bins.app, &shots);
    wait_ready(&d, 60);
    d.wait_for(
        "[data-testid=\"server-status\"][data-server=\"local\"][data-state=\"connected\"]",
        30,
    );

    // "Add server" offers the Host of ~/.ssh/config; chosen and added.
    let field = d.wait_for("#add-spec", 5);
    d.exec(
        "document.getElementById('add-spec').dispatchEvent(new FocusEvent('focus'))",
        json!([]),
    );
    let offered = until("the SSH config's Host offered", 10, || {
        let v = d.exec(
            "return [...document.querySelectorAll('#ssh-hosts option')].map(o => o.value)",
            json!([]),
        );
        (v != json!([])).then_some(v)
    });
    assert_eq!(offered, json!([HOST]), "{offered}");
    d.type_into(&field, HOST);
    d.click(&d.wait_for("[data-testid=\"add-server\"]", 5));

    // The unknown host key, with the fingerprint the server's admin would read out.
    d.wait_for("[data-testid=\"host-key-dialog\"]", 30);
    let shown = text(&d, "[data-testid=\"fingerprint\"]").unwrap_or_default();
    assert_eq!(shown.trim(), old_fingerprint, "the fingerprint shown");
    let dialog = text(&d, "[data-testid=\"host-key-dialog\"]").unwrap_or_default();
    assert!(dialog.contains(HOST), "{dialog}");
    println!("host key dialog: {dialog}");
    d.screenshot(&shots.join("1-host-key.png"));
    assert!(
        sshd::read(&known_hosts).is_empty(),
        "trusted before it was accepted"
    );
    d.click(&d.wait_for("[data-testid=\"host-key-accept\"]", 5));

    // The password, asked for in the app's dialog: a wrong one is refused there.
    d.wait_for("[data-testid=\"secret-dialog\"]", 30);
    let asked = text(&d, "[data-testid=\"secret-message\"]").unwrap_or_default();
    println!("password asked: {asked}");
    assert!(
        sshd::read(&known_hosts).contains(&format!("[127.0.0.1]:{}", sshd.port)),
        "the accepted key is remembered"
    );
    assert!(asked.contains(&user.name), "{asked}");
    assert!(d.find_all("[data-testid=\"secret-refused\"]").is_empty());
    d.screenshot(&shots.join("2-password.png"));
    send_secret(&d, "not the password");
    let refused = refused_in_dialog(&d, "the wrong password refused in the dialog");
    println!("wrong password: {refused}");
    assert!(refused.contains("not accepted"), "{refused}");
    d.screenshot(&shots.join("3-password-refused.png"));
    let t0 = Instant::now();
    send_secret(&d, PASSWORD);

    // Deployed and connected: the server's GPUs on the calendar.
    d.wait_for(
        &format!(
            "[data-testid=\"server-status\"][data-server=\"{HOST}\"][data-state=\"connected\"]"
        ),
        180,
    );
    d.wait_for(
        &format!("[data-testid=\"gpu-lane\"][data-server=\"{HOST}\"][data-gpu=\"1\"]"),
        30,
    );
    println!(
        "FIGURE the lab server added (agent uploaded and started over SSH): {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        d.find_all("[data-testid=\"secret-dialog\"]").is_empty(),
        "the dialog closes"
    );
    let entry = server_entry(&d, HOST);
    assert!(
        entry["text"].as_str().unwrap_or("").contains("simulated"),
        "{entry}"
    );
    assert!(
        user.home.join(".local/share/gpubook/bin").is_dir(),
        "the agent was put into the user's account"
    );
    d.screenshot(&shots.join("4-connected.png"));

    // A booking dragged over both of its GPUs, two hours from the next full hour + 2.
    let start =
        Utc::now().duration_trunc(ChronoDuration::hours(1)).unwrap() + ChronoDuration::hours(2);
    let end = start + ChronoDuration::hours(2);
    let from = point(&d, HOST, 0, start + ChronoDuration::minutes(5));
    let to = point(&d, HOST, 1, end - ChronoDuration::minutes(5));
    d.drag(from, to);
    d.wait_for("[data-testid=\"book-dialog\"]", 10);
    let title = d.wait_for("[data-testid=\"book-dialog\"] [name=\"title\"]", 5);
    d.type_into(&title, "over ssh");
    d.click(&d.wait_for("[data-testid=\"book-submit\"]", 5));
    let mine = until("the booking in the lab server's agent", 30, || {
        ls_as(&cli, &user)
            .into_iter()
            .find(|b| b["title"] == "over ssh")
    });
    assert_eq!(mine["owner"], user.name.as_str(), "{mine}");
    assert_eq!(mine["gpus"].as_array().map(Vec::len), Some(2), "{mine}");
    let at = |k: &str| {
        DateTime::parse_from_rfc3339(mine["interval"][k].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    assert_eq!((at("start"), at("end")), (start, end), "{mine}");
    let id = mine["id"].as_u64().unwrap();
    let block = format!("[data-testid=\"booking\"][data-booking-id=\"{id}\"]");
    d.wait_for(&block, 10);
    d.screenshot(&shots.join("5-booked.png"));

    // The server's sshd comes back with a new host key: refused, and said so.
    let key = sshd.dir.path().join("host_ed25519");
    let saved = dir.join("old_host_key");
    std::fs::copy(&key, &saved).unwrap();
    std::fs::copy(key.with_extension("pub"), saved.with_extension("pub")).unwrap();
    sshd.new_host_key();
    let new_fingerprint = sshd.fingerprint();
    let refused_at = Instant::now();
    let refusal = until("the host key refusal on the server list", 30, || {
        let e = server_entry(&d, HOST);
        (e["hostKey"] == true).then_some(e)
    });
    println!(
        "refusal shown after {:.1} s: {refusal}",
        refused_at.elapsed().as_secs_f64()
    );
    assert_eq!(refusal["state"], "unreachable", "{refusal}");
    let shown = refusal["text"].as_str().unwrap();
    for part in [
        "refused: its host key changed",
        "another host key than the one you trusted",
        new_fingerprint.as_str(),
        "ssh-keygen -R",
    ] {
        assert!(shown.contains(part), "{part:?} not in {shown:?}");
    }
    assert_eq!(
        refusal["signIn"], false,
        "a password does not fix a host key"
    );
    d.screenshot(&shots.join("6-host-key-changed.png"));
    until("the refusal's notification", 30, || {
        let log = std::fs::read_to_string(&monitor_log).unwrap_or_default();
        (log.contains("gpu-lab refused: its host key changed") && log.contains(&new_fingerprint))
            .then_some(())
    });
    assert!(
        sshd::read(&known_hosts).lines().count() == 1,
        "the new key was not trusted: {}",
        sshd::read(&known_hosts)
    );

    // The old key back (the admin undid the change): connected again by itself, with the
    // password typed for this run.
    sshd.stop();
    std::fs::copy(&saved, &key).unwrap();
    std::fs::copy(saved.with_extension("pub"), key.with_extension("pub")).unwrap();
    sshd.restart();
    let back = until("reconnected with the old key", 90, || {
        let e = server_entry(&d, HOST);
        (e["state"] == "connected" || e["signIn"] == true).then_some(e)
    });
    assert_eq!(back["hostKey"], false, "{back}");
    assert_eq!(
        back["state"], "connected",
        "the password typed for this run was forgotten: {back}"
    );

    // The password changed on the server: the login is refused; "Sign in…".
    user.set_password(NEW_PASSWORD);
    sshd.stop();
    sshd.restart();
    let waiting = until("Sign in… offered", 90, || {
        let e = server_entry(&d, HOST);
        (e["signIn"] == true).then_some(e)
    });
    println!("login refused: {waiting}");
    d.screenshot(&shots.join("7-sign-in-offered.png"));
    d.click(&d.wait_for(
        &format!(
            "[data-testid=\"server-status\"][data-server=\"{HOST}\"] [data-testid=\"sign-in\"]"
        ),
        5,
    ));
    d.wait_for("[data-testid=\"secret-dialog\"]", 10);
    assert!(d.find_all("[data-testid=\"secret-refused\"]").is_empty());
    send_secret(&d, PASSWORD);
    let refused = refused_in_dialog(&d, "the old password refused in the dialog");
    println!("old password: {refused}");
    d.screenshot(&shots.join("8-sign-in-refused.png"));
    send_secret(&d, NEW_PASSWORD);
    d.wait_for(
        &format!(
            "[data-testid=\"server-status\"][data-server=\"{HOST}\"][data-state=\"connected\"]"
        ),
        60,
    );
    assert!(!d.find_all(&block).is_empty(), "the booking is still drawn");
    let entry = server_entry(&d, HOST);
    assert_eq!(entry["signIn"], false, "{entry}");
    d.screenshot(&shots.join("9-signed-in.png"));

    // No password in a file of the person's home or the app's (the keyring's own file is
    // encrypted).
    for pw in [PASSWORD, NEW_PASSWORD] {
        let found = files_holding(&home, pw);
        assert!(found.is_empty(), "a password in {found:?}");
    }
    d.quit();
    std::thread::sleep(Duration::from_millis(500));
    user.kill_all();
}
