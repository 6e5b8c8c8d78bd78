//! The built desktop app, driven by tauri-driver and WebKitWebDriver under Xvfb, against a
//! real agent with simulated GPUs (shared mode, run as root) on a temporary socket, with a
//! real D-Bus session bus and dunst:
//! - a W3C pointer drag over two GPUs for two hours books them: the booking is then in the
//!   agent (read back with the gpubook CLI) and on the calendar;
//! - another person's booking (made by a real second Unix user) cannot be dragged: it stays;
//! - a job that finishes raises a notification, read on the bus with dbus-monitor;
//! - a slot too short for its end warning offers "Extend 1 h" as it starts; chosen in dunst's
//!   menu, it extends the booking;
//! - a finished job's panel shows its state with the exit status and the tail of its log; a
//!   running job's log grows in its open panel as the agent pushes it;
//! - screenshots of the calendar with bookings, the booking dialog and the GPU panel go to
//!   $GPUBOOK_SCREENSHOTS (default target/screenshots);
//! - the tray icon, registered with a StatusNotifierWatcher of the test's (as a panel runs
//!   one), shows the next booking with its countdown in its menu, read over D-Bus;
//! - a second launch hands over to the first; closing the window (WM_DELETE_WINDOW, as a
//!   window manager sends it) hides it and the app keeps running;
//! - the export, the feed, the settings and typed errors through the real IPC;
//! - time zoom by the buttons and Ctrl+wheel: a two-hour block's rendered label reads
//!   "you · e2e training" at 60 (the default), 80 and 120 px per hour; fitted to 72 hours, its tooltip (on
//!   hover and on keyboard focus) gives owner, title, GPUs, times and state; a screenshot at
//!   each level;
//! - the Reports page's charts read back against `gpubook report`, and news while away set
//!   through the app and read back from the agent (app/report.rs);
//! - the timeline across a DST change, the app started in Europe/Berlin (app/dst.rs);
//! - figures: cold start to an interactive calendar, the app's memory with 3 servers, and the
//!   calendar's bench at 100 to 10,000 bookings and 256 GPU rows.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as ChronoDuration, DurationRound, Utc};
use gpubook_e2e::*;

/// This test, as the require-or-skip rule names it.
const E2E: &str = "the app's end-to-end test";
use serde_json::{json, Value};

const OTHER: &str = "gpb-e2e-other";

/// The Reports page and "News while away" (their checks, in their own file).
#[path = "app/report.rs"]
mod report;

/// The timeline across a DST change, in the app started in Europe/Berlin.
#[path = "app/dst.rs"]
mod dst;

/// The CLI as `user` (None: root), JSON out.
fn cli(cli: &Path, socket: &Path, user: Option<&str>, args: &[&str]) -> Value {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(cli);
            c
        }
        None => Command::new(cli),
    };
    let out = cmd
        .arg("--server")
        .arg(format!("unix:{}", socket.display()))
        .arg("--json")
        .args(args)
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "gpubook {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The id of the booking `gpubook book --json` printed.
fn booked_id(v: &Value) -> u64 {
    v["booking"]["id"]
        .as_u64()
        .or_else(|| v["id"].as_u64())
        .unwrap_or_else(|| panic!("no booking id in {v}"))
}

/// Books GPU `gpu` as root for 15 minutes as soon as possible, running `command`; its id.
fn book_job(cli_bin: &Path, socket: &Path, gpu: &str, title: &str, command: &str) -> u64 {
    let args = [
        "book", "--gpu", gpu, "--asap", "--for", "15m", "--title", title, "--", command,
    ];
    booked_id(&cli(cli_bin, socket, None, &args))
}

/// The app's tray menu as text (gdbus's rendering of com.canonical.dbusmenu.GetLayout), read
/// from the item the app registered with the test's StatusNotifierWatcher; `None` until it
/// registered.
fn tray_menu(bus: &str, items: &Path) -> Option<String> {
    let log = std::fs::read_to_string(items).ok()?;
    let (service, path) = log.lines().rev().find_map(|l| l.split_once(' '))?;
    let gdbus = |args: &[&str]| -> Option<String> {
        let out = Command::new("gdbus")
            .args(["call", "--session", "--dest", service])
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", bus)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let menu = gdbus(&[
        "--object-path",
        path,
        "--method",
        "org.freedesktop.DBus.Properties.Get",
        "org.kde.StatusNotifierItem",
        "Menu",
    ])?;
    // "(<objectpath '/org/ayatana/NotificationItem/.../Menu'>,)"
    let menu = menu.split('\'').nth(1)?;
    gdbus(&[
        "--object-path",
        menu,
        "--method",
        "com.canonical.dbusmenu.GetLayout",
        // The arguments: the root item, all levels, every property.
        "--",
        "0",
        "-1",
        "@as []",
    ])
}

/// Clicks booking `id`'s block on the calendar, found and clicked in one script: the
/// calendar redraws blocks as events arrive, and a WebDriver handle to one can go stale.
fn click_booking(d: &Driver, id: u64) {
    until(
        &format!("booking {id} on the calendar, clicked"),
        10,
        || {
            d.exec(
            "const e = document.querySelector(arguments[0]); if (e) { e.click(); return true; } return false;",
            json!([format!("[data-testid=\"booking\"][data-booking-id=\"{id}\"]")]),
        )
        .as_bool()
        .filter(|clicked| *clicked)
        },
    );
}

#[test]
fn drag_to_book_refuse_other_peoples_and_notify_a_finished_job() {
    if !enabled("the app's E2E test") {
        return;
    }
    let Some(Binaries {
        app,
        agent: agent_bin,
        cli: cli_bin,
    }) = binaries_and_tools(
        E2E,
        &[
            "Xvfb",
            "dbus-daemon",
            "dbus-send",
            "dbus-monitor",
            "gdbus",
            "dunst",
            "tauri-driver",
            "WebKitWebDriver",
            "runuser",
            "useradd",
        ],
    )
    else {
        return;
    };
    let shots = screenshots();

    // A directory every user may traverse: sockets and the CLI for the other user.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cli_copy = dir.join("gpubook");
    std::fs::copy(&cli_bin, &cli_copy).unwrap();
    std::fs::set_permissions(&cli_copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    gpubook_testkit::ensure_user(OTHER);

    let (_x, display) = xvfb();
    let (_bus, bus) = session_bus();
    // dunst's context menu goes through "dmenu": here a script that picks "Extend 1 h".
    let dmenu = dir.join("dmenu.sh");
    std::fs::write(&dmenu, "#!/bin/sh\ngrep -m1 'Extend'\n").unwrap();
    std::fs::set_permissions(&dmenu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dunstrc = dir.join("dunstrc");
    std::fs::write(
        &dunstrc,
        format!("[global]\n    dmenu = {}\n", dmenu.display()),
    )
    .unwrap();
    let _dunst = Proc::spawn(
        "dunst",
        Command::new("dunst")
            .arg("-config")
            .arg(&dunstrc)
            .env("DISPLAY", &display)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    until("dunst on the bus", 15, || {
        bus_has(&bus, "org.freedesktop.Notifications").then_some(())
    });
    // A panel's StatusNotifierWatcher, so the app's tray icon registers on the bus (Xvfb has
    // no panel); the test reads the icon's menu as a panel would.
    let tray_log = dir.join("tray-items.log");
    let _watcher = Proc::spawn(
        "the StatusNotifierWatcher",
        Command::new("/usr/bin/python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("sni_watcher.py"))
            .arg(&tray_log)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus)
            .stdout(Stdio::null()),
    );
    until("the StatusNotifierWatcher on the bus", 15, || {
        bus_has(&bus, "org.kde.StatusNotifierWatcher").then_some(())
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

    // This computer (shared, so the other user can book) and two more servers: 3 in all.
    let (_agent, socket) = start_agent(&agent_bin, dir, "e2e-local", true, &shots);
    let (_a2, s2) = start_agent(&agent_bin, dir, "e2e-lab2", false, &shots);
    let (_a3, s3) = start_agent(&agent_bin, dir, "e2e-lab3", false, &shots);
    let config = dir.join("config");
    std::fs::create_dir_all(config.join("gpubook")).unwrap();
    std::fs::write(
        config.join("gpubook/servers.toml"),
        format!(
            "[[server]]\nname = \"lab2\"\nspec = \"unix:{}\"\n\n[[server]]\nname = \"lab3\"\nspec = \"unix:{}\"\n",
            s2.display(),
            s3.display()
        ),
    )
    .unwrap();

    // Someone else's booking, tomorrow at 03:00 UTC for 2 hours on GPU 2.
    let tomorrow =
        Utc::now().duration_trunc(ChronoDuration::days(1)).unwrap() + ChronoDuration::days(1);
    let other_start =
        Utc::now().duration_trunc(ChronoDuration::hours(1)).unwrap() + ChronoDuration::hours(5);
    let _ = tomorrow;
    let other = cli(
        &cli_copy,
        &socket,
        Some(OTHER),
        &[
            "book",
            "--gpu",
            "2",
            "--start",
            &iso(other_start),
            "--for",
            "2h",
            "--title",
            "other's run",
        ],
    );
    let other_id = booked_id(&other);

    // tauri-driver, with the app's environment.
    // The person's SSH config, whose Hosts "Add server" offers.
    let ssh_config = dir.join("ssh_config");
    std::fs::write(
        &ssh_config,
        "Host e2e-ssh-lab e2e-gpu-box\n  HostName 127.0.0.1\nHost *.lab\n  User x\n",
    )
    .unwrap();
    let port = 4444 + (std::process::id() % 1000) as u16;
    std::fs::create_dir_all(dir.join("runtime")).unwrap();
    let app_env = vec![
        ("GPUBOOK_SOCKET", socket.clone().into_os_string()),
        ("GPUBOOK_AGENT_BINARY", agent_bin.clone().into_os_string()),
        ("XDG_CONFIG_HOME", config.clone().into_os_string()),
        ("GPUBOOK_SSH_CONFIG", ssh_config.clone().into_os_string()),
        ("XDG_DATA_HOME", dir.join("data").into_os_string()),
        ("XDG_RUNTIME_DIR", dir.join("runtime").into_os_string()),
        ("XDG_DOWNLOAD_DIR", dir.join("downloads").into_os_string()),
    ];
    let (_driver, url) = tauri_driver(port, &display, &bus, app_env.clone(), &shots, "app");

    // Cold start: from asking for the session to the calendar being interactive.
    let t0 = Instant::now();
    let d = open_app(&url, &app, &shots);
    wait_ready(&d, 60);
    let cold = t0.elapsed();
    println!(
        "FIGURE cold start to interactive calendar: {:.2} s",
        cold.as_secs_f64()
    );
    d.screenshot(&shots.join("startup.png"));
    let lanes = d.exec(
        "return Array.from(document.querySelectorAll('[data-testid=gpu-lane]')).slice(0, 8).map(e => e.dataset.server + '/' + e.dataset.gpu).join(' ') + ' | servers: ' + Array.from(document.querySelectorAll('[data-testid=server-status]')).map(e => e.dataset.server + '=' + e.dataset.state).join(' ')",
        json!([]),
    );
    println!("lanes: {lanes}");
    d.wait_for(
        "[data-testid=\"gpu-lane\"][data-server=\"local\"][data-gpu=\"1\"]",
        30,
    );
    until("3 servers connected", 30, || {
        let n = d
            .find_all("[data-testid=\"server-status\"][data-state=\"connected\"]")
            .len();
        (n >= 3).then_some(())
    });
    d.wait_for(
        &format!("[data-testid=\"booking\"][data-booking-id=\"{other_id}\"]"),
        20,
    );

    // Drag over GPUs 0 and 1 for two hours, starting on the next full hour + 1.
    let start =
        Utc::now().duration_trunc(ChronoDuration::hours(1)).unwrap() + ChronoDuration::hours(2);
    let end = start + ChronoDuration::hours(2);
    let point = |gpu: u32, t: DateTime<Utc>| point(&d, "local", gpu, t);
    let from = point(0, start + ChronoDuration::minutes(5));
    let to = point(1, end - ChronoDuration::minutes(5));
    d.drag(from, to);
    let dialog = d.wait_for("[data-testid=\"book-dialog\"]", 10);
    let _ = dialog;
    let title = d.wait_for("[data-testid=\"book-dialog\"] [name=\"title\"]", 5);
    d.type_into(&title, "e2e training");
    d.screenshot(&shots.join("booking-dialog.png"));
    d.click(&d.wait_for("[data-testid=\"book-submit\"]", 5));

    // In the agent, read back with the CLI, and on the calendar.
    let mine = until("the booking in the agent", 20, || {
        bookings(&cli(&cli_copy, &socket, None, &["ls"]))
            .into_iter()
            .find(|b| b["title"] == "e2e training")
    });
    assert_eq!(mine["owner"], "root", "{mine}");
    assert_eq!(mine["gpus"].as_array().map(Vec::len), Some(2), "{mine}");
    let (s, e) = (
        mine["interval"]["start"].as_str().unwrap(),
        mine["interval"]["end"].as_str().unwrap(),
    );
    let (s, e) = (
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc),
        DateTime::parse_from_rfc3339(e).unwrap().with_timezone(&Utc),
    );
    assert_eq!((s, e), (start, end), "the booking's interval");
    let my_id = mine["id"].as_u64().unwrap();
    d.wait_for(
        &format!("[data-testid=\"booking\"][data-booking-id=\"{my_id}\"][data-owner=\"root\"]"),
        10,
    );

    // The tray, read over D-Bus as a panel reads it: the next booking and its countdown.
    let line = until("the tray's next-booking line", 20, || {
        let layout = tray_menu(&bus, &tray_log)?;
        layout.contains("e2e training").then_some(layout)
    });
    assert!(
        line.contains("Next: \u{201c}e2e training\u{201d} on This computer in "),
        "{line}"
    );
    for item in ["Show gpubook", "Quit"] {
        assert!(line.contains(item), "no {item} in the tray menu: {line}");
    }
    let next = line[line.find("Next:").unwrap()..]
        .split('\'')
        .next()
        .unwrap();
    println!("tray menu: {next}");

    // Another person's booking cannot be dragged: it stays where it was.
    let other_el = d.wait_for(
        &format!("[data-testid=\"booking\"][data-booking-id=\"{other_id}\"]"),
        5,
    );
    let r = d.exec(
        "const r = arguments[0].getBoundingClientRect(); return {x: r.left + r.width / 2, y: r.top + r.height / 2, w: r.width};",
        json!([{ "element-6066-11e4-a52e-4f735466cecf": other_el }]),
    );
    let (x, y) = (r["x"].as_f64().unwrap(), r["y"].as_f64().unwrap());
    let shift = point(2, other_start + ChronoDuration::hours(3)).0 - point(2, other_start).0;
    d.drag((x, y), (x + shift, y));
    // The refusal says why, inline.
    let why = until("the refusal shown inline", 10, || {
        let t = d.exec(
            "const e = document.querySelector('[data-testid=error]'); return e ? e.textContent : null;",
            json!([]),
        );
        t.as_str().filter(|t| t.contains(OTHER)).map(str::to_string)
    });
    println!("refusal shown: {why}");
    std::thread::sleep(Duration::from_secs(1));
    let still = bookings(&cli(&cli_copy, &socket, None, &["ls"]))
        .into_iter()
        .find(|b| b["id"].as_u64() == Some(other_id))
        .expect("the other booking is still there");
    assert_eq!(
        still["interval"]["start"]
            .as_str()
            .map(|s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)),
        Some(other_start),
        "another person's booking moved: {still}"
    );
    assert_eq!(still["revision"], other["booking"]["revision"], "{still}");
    d.screenshot(&shots.join("calendar.png"));

    // Time zoom: the two-hour block reads "you · e2e training" at the default zoom and closer
    // (the label's rendered text, and its width within the block's); zoomed out to the whole
    // 72 hours it is too narrow, and the calendar's own tooltip says it all.
    let zoom = || d.exec("return window.__gpubook.getZoom()", json!([]));
    let block = format!("[data-testid=\"booking\"][data-booking-id=\"{my_id}\"]");
    let label = || {
        d.exec(
            "const b = document.querySelector(arguments[0]); const l = b && b.querySelector('[data-testid=booking-label]'); if (!l) return null; const r = b.getBoundingClientRect(); return {text: l.textContent, fits: l.scrollWidth <= r.width - 4, width: r.width, label: l.scrollWidth};",
            json!([block]),
        )
    };
    let zoomed_to = |want: Value| {
        until(&format!("the zoom at {want}"), 10, || {
            (zoom() == want).then_some(())
        });
        std::thread::sleep(Duration::from_millis(400));
    };
    zoomed_to(json!(60));
    for (step, px) in [("default", 60), ("zoom-in", 80), ("ctrl-wheel", 120)] {
        match step {
            "zoom-in" => d.click(&d.wait_for("[data-testid=\"zoom-in\"]", 5)),
            "ctrl-wheel" => {
                d.exec(
                    "const b = document.querySelector(arguments[0]).getBoundingClientRect(); document.querySelector(arguments[0]).dispatchEvent(new WheelEvent('wheel', {bubbles: true, cancelable: true, ctrlKey: true, deltaY: -100, clientX: b.left + b.width / 2, clientY: b.top + b.height / 2}));",
                    json!([block]),
                );
            }
            _ => {}
        }
        zoomed_to(json!(px));
        let l = label();
        println!("zoom {px} px/h ({step}): the two-hour block's label {l}");
        assert_eq!(l["text"], "you \u{b7} e2e training", "{l}");
        assert_eq!(l["fits"], true, "the label is clipped at {px} px/h: {l}");
        d.screenshot(&shots.join(format!("zoom-{px}.png")));
    }
    d.click(&d.wait_for("[data-testid=\"zoom-fit\"]", 5));
    zoomed_to(json!("fit"));
    let l = label();
    assert_eq!(l["fits"], false, "fitted, a two-hour block is narrow: {l}");
    d.exec(
        "document.querySelector(arguments[0]).dispatchEvent(new PointerEvent('pointerover', {bubbles: true}));",
        json!([block]),
    );
    let tip = until("the block's tooltip on hover", 5, || {
        d.exec(
            "const t = document.querySelector('[data-testid=block-tip]'); return t && t.textContent;",
            json!([]),
        )
        .as_str()
        .map(str::to_string)
    });
    println!("fitted: the two-hour block's tooltip: {tip}");
    for part in [
        "you \u{b7} e2e training",
        "GPUs 0, 1 on This computer",
        "confirmed",
    ] {
        assert!(tip.contains(part), "{part:?} not in the tooltip {tip:?}");
    }
    d.screenshot(&shots.join("zoom-fit-tooltip.png"));
    // Keyboard focus shows it too.
    d.exec(
        "document.querySelector('[data-testid=calendar]').dispatchEvent(new PointerEvent('pointerleave'));",
        json!([]),
    );
    until("the tooltip gone when the pointer leaves", 5, || {
        d.exec(
            "return !document.querySelector('[data-testid=block-tip]');",
            json!([]),
        )
        .as_bool()
        .filter(|b| *b)
    });
    d.exec(
        "document.querySelector(arguments[0]).focus();",
        json!([block]),
    );
    until("the block's tooltip on keyboard focus", 5, || {
        d.exec(
            "return document.activeElement && document.activeElement.matches(arguments[0]) && !!document.querySelector('[data-testid=block-tip]');",
            json!([block]),
        )
        .as_bool()
        .filter(|b| *b)
    });
    // Back to the default for the steps below.
    for _ in 0..8 {
        if zoom() == json!(60) {
            break;
        }
        d.click(&d.wait_for("[data-testid=\"zoom-in\"]", 5));
        std::thread::sleep(Duration::from_millis(300));
    }
    zoomed_to(json!(60));

    // Memory with 3 servers connected.
    if let Some(pid) = pid_of(&app) {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let procs: Vec<String> = descendants(pid)
            .iter()
            .filter_map(|p| {
                let name = std::fs::read_to_string(format!("/proc/{p}/comm")).ok()?;
                Some(format!("{} {:.0} MiB", name.trim(), mib(rss(*p))))
            })
            .collect();
        let app_pss = tree_pss(pid);
        println!(
            "FIGURE app memory with 3 servers: RSS {:.0} MiB, PSS {:.0} MiB (gpubook-app and its WebKit processes: {})",
            mib(tree_rss(pid)),
            mib(app_pss),
            procs.join(", ")
        );
        // The baseline: an empty Tauri 2 window on the same display, the same WebKitGTK and
        // settings (src-tauri/examples/empty-window.rs), measured the same way.
        if let Some(bin) = std::env::var_os("GPUBOOK_EMPTY_WINDOW_BINARY") {
            let empty = Proc::spawn(
                "the empty Tauri window",
                Command::new(&bin)
                    .env("DISPLAY", &display)
                    .env("DBUS_SESSION_BUS_ADDRESS", &bus)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            );
            until("the empty window's web process", 30, || {
                descendants(empty.pid())
                    .iter()
                    .any(|p| {
                        std::fs::read_to_string(format!("/proc/{p}/comm"))
                            .is_ok_and(|c| c.starts_with("WebKitWebProces"))
                    })
                    .then_some(())
            });
            // Settled: as long as the app had before it was measured.
            std::thread::sleep(Duration::from_secs(5));
            // Both at the same moment: the libraries they share are split between them, so
            // each PSS is taken under the same sharing.
            let (empty_pss, app_now) = (tree_pss(empty.pid()), tree_pss(pid));
            println!(
                "FIGURE memory against an empty Tauri window (both running): empty window PSS {:.0} MiB (RSS {:.0} MiB), gpubook with 3 servers PSS {:.0} MiB (RSS {:.0} MiB): {:.2}x PSS, {:.2}x RSS (goal 1.15x); gpubook alone before: PSS {:.0} MiB",
                mib(empty_pss),
                mib(tree_rss(empty.pid())),
                mib(app_now),
                mib(tree_rss(pid)),
                app_now as f64 / empty_pss.max(1) as f64,
                tree_rss(pid) as f64 / tree_rss(empty.pid()).max(1) as f64,
                mib(app_pss)
            );
        }
    }

    // Frame time while dragging over a week x 32 GPUs x 2,000 bookings, measured in the
    // app's WebKitGTK by the UI's own bench (it puts everything back when done).
    d.exec(
        "window.__benchResult = null; window.__gpubookBench().then(r => window.__benchResult = r, e => window.__benchResult = {error: String(e)}); return true",
        json!([]),
    );
    let r = until("the drag bench", 180, || {
        let v = d.exec("return window.__benchResult", json!([]));
        (!v.is_null()).then_some(v)
    });
    assert!(r.get("error").is_none(), "bench: {r}");
    println!(
        "FIGURE frame time while dragging (week, 32 GPUs, 2,000 bookings, WebKitGTK): median {} ms, p95 {} ms, max {} ms; load {} ms; one pushed change {} ms",
        r["median_ms"], r["p95_ms"], r["max_ms"], r["load_ms"], r["update_ms"]
    );

    // How the cost grows: the same bench (fewer frames) at 100, 500, 2,000 and 10,000
    // bookings, and with a cluster's 256 GPU rows.
    let mut table = vec![
        "| GPUs | bookings | drag median / p95 (ms) | load (ms) | one pushed change (ms) |"
            .to_string(),
        "| --- | --- | --- | --- | --- |".to_string(),
    ];
    for (gpus, n) in [
        (32, 100),
        (32, 500),
        (32, 2000),
        (32, 10000),
        (256, 2000),
        (256, 10000),
    ] {
        d.exec(
            "window.__benchResult = null; window.__gpubookBench({gpus: arguments[0], bookings: arguments[1], frames: 60}).then(r => window.__benchResult = r, e => window.__benchResult = {error: String(e)}); return true",
            json!([gpus, n]),
        );
        let r = until(
            &format!("the bench at {gpus} GPUs, {n} bookings"),
            300,
            || {
                let v = d.exec("return window.__benchResult", json!([]));
                (!v.is_null()).then_some(v)
            },
        );
        assert!(r.get("error").is_none(), "bench {gpus} x {n}: {r}");
        table.push(format!(
            "| {gpus} | {n} | {} / {} | {} | {} |",
            r["median_ms"], r["p95_ms"], r["load_ms"], r["update_ms"]
        ));
        println!("bench row: {}", table.last().unwrap());
    }
    println!(
        "FIGURE the calendar as it grows (timeline week, WebKitGTK):\n{}",
        table.join("\n")
    );

    // A job that finishes: a notification on the bus.
    let job_id = book_job(&cli_copy, &socket, "3", "quick job", "echo done; sleep 1");
    until("the job-finished notification", 40, || {
        let log = std::fs::read_to_string(&monitor_log).unwrap_or_default();
        (log.contains("Job of") && log.contains("quick job") && log.contains("finished"))
            .then_some(())
    });
    let log = std::fs::read_to_string(&monitor_log).unwrap();
    assert!(log.contains("exited with code 0"), "{log}");
    println!("notification for booking {job_id} seen on the bus");

    // Its panel: the job's state and the tail of its log, through the real IPC.
    // A 15-minute block is a few pixels wide in the 72-hour view; the click goes to it
    // directly (the pointer path of opening a booking is not what this checks).
    click_booking(&d, job_id);
    let shown = until("the job's log in its panel", 20, || {
        let t = d.exec(
            "const e = document.querySelector('[data-testid=job-log]'); return e ? e.textContent : null;",
            json!([]),
        );
        t.as_str()
            .filter(|t| t.contains("done"))
            .map(str::to_string)
    });
    let state = d.exec(
        "const e = document.querySelector('[data-testid=job-state]'); return e ? e.textContent : null;",
        json!([]),
    );
    assert!(
        state.as_str().is_some_and(|s| s.contains("exit 0")),
        "job state in the panel: {state}"
    );
    println!("the panel shows the job's log: {shown:?}, state {state}");
    d.screenshot(&shots.join("booking-panel.png"));

    // Its GPU use over the slot, drawn in the panel from the agent's series: the points read
    // back from the page are the agent's, as `gpubook usage N --series` gives them.
    let drawn = until("the usage chart with its points", 20, || {
        let v = d.exec(
            "const g = [...document.querySelectorAll('[data-testid=usage-gpu]')]; const c = document.querySelector('[data-testid=usage-chart]'); return c && g.length ? {verdict: c.dataset.verdict, gpus: g.map(e => JSON.parse(e.dataset.points))} : null;",
            json!([]),
        );
        (!v.is_null() && v["gpus"][0].as_array().is_some_and(|p| !p.is_empty())).then_some(v)
    });
    let series = cli(
        &cli_copy,
        &socket,
        None,
        &["usage", &job_id.to_string(), "--series"],
    );
    let agent: Vec<(f64, u64)> = series["gpus"][0]["points"]
        .as_array()
        .expect("the agent's points")
        .iter()
        .map(|p| {
            (
                p["util_mean"].as_f64().unwrap(),
                p["memory_mean"].as_u64().unwrap(),
            )
        })
        .collect();
    let page: Vec<(f64, u64)> = drawn["gpus"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[1].as_f64().unwrap(), p[2].as_u64().unwrap()))
        .collect();
    assert_eq!(
        page, agent,
        "the drawn series is not the agent's: {drawn} vs {series}"
    );
    assert_ne!(drawn["verdict"], "error", "{drawn}");
    println!(
        "the panel draws the job's GPU use: {} point(s), verdict {}",
        page.len(),
        drawn["verdict"]
    );

    // A running job's log in its open panel grows as the job writes it: pushed by the agent
    // (a line every 0.5 s shows within the second, where asking every 5 s could not).
    let ticker_id = book_job(
        &cli_copy,
        &socket,
        "1",
        "ticker",
        "for i in $(seq 1 60); do echo tick $i; sleep 0.5; done",
    );
    click_booking(&d, ticker_id);
    let log_text = || {
        d.exec(
            "const e = document.querySelector('[data-testid=job-log]'); return e ? e.textContent : '';",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    };
    // The number of the last "tick N" line shown.
    let last_tick = || -> Option<u32> {
        log_text()
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
    };
    let first = until("the ticker's first lines in its panel", 20, last_tick);
    let seen_at = Instant::now();
    assert!(
        first < 50,
        "the panel opened late: the job is at tick {first}"
    );
    let later = until("the ticker's log growing in the open panel", 20, || {
        last_tick().filter(|n| *n >= first + 4)
    });
    let grew_in = seen_at.elapsed();
    println!("the open panel's log grew from tick {first} to tick {later} in {grew_in:?}");
    assert!(
        grew_in < Duration::from_secs(4),
        "the log took {grew_in:?} to show 4 more lines: it is not pushed"
    );

    // A slot too short for its own end warning (10 minutes; the policy warns 15 before the
    // end) says its end as it starts, with "Extend 1 h", clicked in dunst's menu.
    let ending = cli(
        &cli_copy,
        &socket,
        None,
        &[
            "book",
            "--gpu",
            "3",
            "--asap",
            "--for",
            "10m",
            "--title",
            "ending soon",
        ],
    );
    let ending_id = ending["booking"]["id"].as_u64().unwrap();
    let ending_end = ending["booking"]["interval"]["end"]
        .as_str()
        .unwrap()
        .to_string();
    until("the slot-ending notification with its action", 60, || {
        let log = std::fs::read_to_string(&monitor_log).unwrap_or_default();
        let at = log.find("\u{201c}ending soon\u{201d} has started; it ends in")?;
        log[at..].contains("string \"Extend 1 h\"").then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let ctx = Command::new("dunstctl")
        .arg("context")
        .env("DBUS_SESSION_BUS_ADDRESS", &bus)
        .env("DISPLAY", &display)
        .output()
        .unwrap();
    assert!(ctx.status.success(), "dunstctl context: {ctx:?}");
    let extended = until("the booking extended by the action", 20, || {
        let b = bookings(&cli(&cli_copy, &socket, None, &["ls"]))
            .into_iter()
            .find(|b| b["id"].as_u64() == Some(ending_id))?;
        (b["interval"]["end"].as_str()? != ending_end).then_some(b)
    });
    let end = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    // An hour more, snapped by the agent to the policy's 15-minute grid.
    let more = end(extended["interval"]["end"].as_str().unwrap()) - end(&ending_end);
    assert!(
        (ChronoDuration::minutes(52)..=ChronoDuration::minutes(68)).contains(&more),
        "extended by {more}: {extended}"
    );

    // The GPU panel.
    d.click(&d.wait_for("[data-testid=\"nav-gpus\"]", 5));
    d.wait_for("[data-testid=\"gpu-panel\"]", 10);
    std::thread::sleep(Duration::from_millis(1500));
    d.screenshot(&shots.join("gpu-panel.png"));

    // The commands behind the settings page and the export button, through the real IPC.
    let invoke = |cmd: &str, args: Value| -> Value {
        d.exec(
            "return window.__TAURI_INTERNALS__.invoke(arguments[0], arguments[1]).then(v => ({ok: v}), e => ({err: e}));",
            json!([cmd, args]),
        )
    };
    let ics = invoke("export_ics", json!({"mine": true}));
    let ics = ics["ok"]
        .as_str()
        .unwrap_or_else(|| panic!("export_ics: {ics}"));
    assert!(
        ics.contains("BEGIN:VCALENDAR") && ics.contains("e2e training"),
        "{ics}"
    );
    assert!(
        !ics.contains("other's run"),
        "another person's booking in my export"
    );
    let saved = invoke("save_ics", json!({"mine": true}));
    let saved = PathBuf::from(
        saved["ok"]
            .as_str()
            .unwrap_or_else(|| panic!("save_ics: {saved}")),
    );
    assert!(
        saved.starts_with(dir.join("downloads")),
        "{}",
        saved.display()
    );
    assert!(std::fs::read_to_string(&saved)
        .unwrap()
        .contains("e2e training"));
    let feed = until("the feed's URL", 20, || {
        invoke("feed_url", json!({}))["ok"]
            .as_str()
            .map(str::to_string)
    });
    assert!(feed.starts_with("http://127.0.0.1:"), "{feed}");
    let body = reqwest::blocking::get(&feed).unwrap().text().unwrap();
    assert!(body.contains("e2e training"), "the feed: {body}");
    let mut settings = invoke("settings", json!({}))["ok"].clone();
    assert_eq!(settings["notify"]["job_finished"], true, "{settings}");
    settings["notify"]["intruder"] = json!(false);
    assert_eq!(
        invoke("set_settings", json!({"settings": settings})),
        json!({"ok": null})
    );
    let saved = std::fs::read_to_string(config.join("gpubook/app-settings.json")).unwrap();
    assert!(saved.contains("\"intruder\": false"), "{saved}");
    // Adding a server (here a socket; SSH servers go the same way) and removing it.
    let (_a4, s4) = start_agent(&agent_bin, dir, "e2e-lab4", false, &shots);
    let added = invoke(
        "add_server",
        json!({"spec": format!("unix:{}", s4.display())}),
    );
    assert_eq!(added["ok"]["id"], "e2e-lab4", "{added}");
    d.wait_for(
        "[data-testid=\"server-status\"][data-server=\"e2e-lab4\"][data-state=\"connected\"]",
        20,
    );
    let list = std::fs::read_to_string(config.join("gpubook/servers.toml")).unwrap();
    assert!(list.contains("e2e-lab4"), "{list}");
    let again = invoke(
        "add_server",
        json!({"spec": format!("unix:{}", s4.display())}),
    );
    assert_eq!(again["err"]["kind"], "invalid", "{again}");
    assert_eq!(
        invoke("remove_server", json!({"id": "e2e-lab4"})),
        json!({"ok": null})
    );
    let list = std::fs::read_to_string(config.join("gpubook/servers.toml")).unwrap();
    assert!(!list.contains("e2e-lab4"), "{list}");
    // "Add server" offers the Hosts of the SSH config (not its patterns) once it has focus.
    d.exec(
        "document.getElementById('add-spec').dispatchEvent(new FocusEvent('focus'))",
        json!([]),
    );
    let offered = until("the SSH config's Hosts offered", 10, || {
        let v = d.exec(
            "return [...document.querySelectorAll('#ssh-hosts option')].map(o => o.value)",
            json!([]),
        );
        (v != json!([])).then_some(v)
    });
    assert_eq!(offered, json!(["e2e-ssh-lab", "e2e-gpu-box"]), "{offered}");
    // Errors arrive typed, with a sentence.
    let e = invoke("gpus", json!({"server": "nope"}));
    assert_eq!(e["err"]["kind"], "internal", "{e}");
    assert!(
        e["err"]["message"].as_str().unwrap().contains("no server"),
        "{e}"
    );
    // Reports drawn as the CLI reports them; news while away set, shown and cleared.
    let cli_report = |from: &str, to: &str| -> Value {
        cli(
            &cli_copy,
            &socket,
            None,
            &["report", "--from", from, "--to", to],
        )
    };
    report::check_report_page(&d, &cli_report, &shots);
    let notify_show = || cli(&cli_copy, &socket, None, &["notify", "show"]);
    report::check_news_while_away(&d, &invoke, &notify_show, &shots);
    // Capabilities: only the declared commands; a core window command is refused.
    let e = invoke("plugin:window|close", json!({}));
    assert!(
        e.get("err").is_some(),
        "a command outside the capability ran: {e}"
    );

    // A second launch hands over to the first (single instance) and exits.
    let before = pids_of(&app);
    assert_eq!(before.len(), 1, "one app process: {before:?}");
    let mut second = Command::new(&app)
        .env("DISPLAY", &display)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus)
        .env("GPUBOOK_SOCKET", &socket)
        .env("XDG_CONFIG_HOME", &config)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_RUNTIME_DIR", dir.join("runtime"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = until("the second launch to exit", 20, || {
        second.try_wait().unwrap()
    });
    assert!(status.success(), "second launch: {status}");
    assert_eq!(pids_of(&app), before, "the first instance goes on, alone");

    // Closing the window keeps the app running (in the tray).
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/src/wm_close.py"))
        .arg("gpubook")
        .env("DISPLAY", &display)
        .output()
        .expect("run wm_close.py");
    let n = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && n != "0",
        "no gpubook window to close: {n} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    until("the window to be hidden", 10, || {
        (d.exec("return document.visibilityState", json!([])) == json!("hidden")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pids_of(&app), before, "closing the window ended the app");
    // ... and its notifications keep coming.
    cli(
        &cli_copy,
        &socket,
        None,
        &[
            "book",
            "--gpu",
            "2",
            "--asap",
            "--for",
            "15m",
            "--title",
            "after close",
            "--",
            "true",
        ],
    );
    until("a notification with the window closed", 40, || {
        let log = std::fs::read_to_string(&monitor_log).unwrap_or_default();
        log.contains("Job of \u{201c}after close\u{201d} finished")
            .then_some(())
    });
    d.quit();
    for pid in before {
        // SAFETY: a plain kill(2) of the app this test started.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    until("the app to exit", 20, || {
        pids_of(&app).is_empty().then_some(())
    });

    // The timeline across a DST change: the app again, in Europe/Berlin.
    let change = dst::next_eu_spring_forward(Utc::now());
    let across = cli(
        &cli_copy,
        &socket,
        None,
        &[
            "book",
            "--gpu",
            "0",
            "--start",
            &iso(change - ChronoDuration::hours(1)),
            "--for",
            "4h",
            "--title",
            "across DST",
        ],
    );
    let across_id = booked_id(&across);
    let berlin_port = port + 1;
    let berlin_env = app_env
        .iter()
        .cloned()
        .chain([("TZ", "Europe/Berlin".into())]);
    let (_berlin_driver, berlin_url) = tauri_driver(
        berlin_port,
        &display,
        &bus,
        berlin_env,
        &shots,
        "app-berlin",
    );
    let d = Driver::new(&berlin_url, &app).expect("a WebDriver session in Europe/Berlin");
    until("body[data-ready=true] in Europe/Berlin", 60, || {
        (d.exec("return document.body.dataset.ready === 'true'", json!([])) == json!(true))
            .then_some(())
    });
    dst::check_timeline_across_dst(&d, change, across_id, &shots);
    d.quit();
    for pid in pids_of(&app) {
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
}
