//! `gpubook maintenance` against a real agent run by root, by real Unix users: an admin takes
//! GPUs 2 and 3 (then the whole server) out of service with the time phrases people type; a
//! user's bookings in the way move (to another GPU at the same time, then to the end of the
//! whole-server maintenance) and the CLI says so; the user can neither book into it nor make
//! maintenance (exit 3, kinds `maintenance` and `not_allowed`); `ls` and `end` work, in text
//! and JSON.

mod support;

use gpubook_testkit::require_root;
use serde_json::Value;
use support::{ensure_user, text, Lab};

const ADMIN: &str = "gpb-madmin";
const BOB: &str = "gpb-mbob";

fn json(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn an_admin_takes_gpus_out_of_service_and_a_users_bookings_move_out_of_the_way() {
    if !require_root("an_admin_takes_gpus_out_of_service_and_a_users_bookings_move_out_of_the_way")
    {
        return;
    }
    let admin = ensure_user(ADMIN, &[]);
    let bob = ensure_user(BOB, &[]);
    let lab = Lab::start(&format!("admins = [\"{ADMIN}\"]\n"), "sim:4");
    let book = |gpu: &str, start: &str| {
        lab.gpubook(
            Some(bob),
            &[
                "--json", "book", "--gpu", gpu, "--start", start, "--for", "1h",
            ],
        )
    };
    let sat = json(&book("2", "sat 9:00"))["booking"].clone();
    let sun = json(&book("1", "sun 9:00"))["booking"].clone();

    // A user may not: exit 3, not_allowed.
    let o = lab.gpubook(
        Some(bob),
        &[
            "--json",
            "maintenance",
            "--all",
            "--start",
            "now",
            "--for",
            "1h",
            "--reason",
            "mine",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not_allowed"),
        "{}",
        text(&o)
    );

    // The admin, as in the README.
    let o = lab.gpubook(
        Some(admin),
        &[
            "maintenance",
            "--gpu",
            "2,3",
            "--start",
            "sat 8:00",
            "--for",
            "4h",
            "--reason",
            "driver 570",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Maintenance m1"), "{out}");
    assert!(out.contains("driver 570"), "{out}");
    assert!(
        out.contains(&format!("booking {} by {BOB} moved", sat["id"])),
        "{out}"
    );
    // Moved to a free GPU at the same time: GPUs 0 and 1 are free on Saturday morning.
    let mine = json(&lab.gpubook(Some(bob), &["--json", "ls", "--mine"]));
    let moved = mine["bookings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == sat["id"])
        .unwrap()
        .clone();
    assert_eq!(moved["interval"], sat["interval"], "{mine}");
    assert_ne!(moved["gpus"], sat["gpus"], "{mine}");

    // The whole server on Sunday: Bob's booking waits for its end.
    let v = json(&lab.gpubook(
        Some(admin),
        &[
            "--json",
            "maintenance",
            "--all",
            "--start",
            "sun 8:00",
            "--for",
            "4h",
            "--reason",
            "BIOS update",
        ],
    ));
    let m2 = &v["maintenance"][0];
    assert_eq!(m2["whole_server"], true, "{v}");
    assert_eq!(m2["gpus"].as_array().unwrap().len(), 4, "{v}");
    let changed = &v["changed"][0];
    assert_eq!(changed["id"], sun["id"], "{v}");
    assert_eq!(changed["interval"]["start"], m2["interval"]["end"], "{v}");

    // Nobody books into it: exit 3, kind maintenance.
    let o = lab.gpubook(
        Some(bob),
        &[
            "--json",
            "book",
            "--gpu",
            "3",
            "--start",
            "sat 10:00",
            "--for",
            "1h",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err: Value =
        serde_json::from_slice(&o.stderr).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(err["error"]["kind"], "maintenance", "{err}");

    // ls (anyone), then end (admins).
    let o = lab.gpubook(Some(bob), &["maintenance", "ls"]);
    assert!(o.status.success(), "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("m1") && table.contains("m2"), "{table}");
    assert!(table.contains("BIOS update"), "{table}");
    let o = lab.gpubook(Some(bob), &["maintenance", "end", "m1"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = lab.gpubook(Some(admin), &["maintenance", "end", "m1"]);
    assert!(o.status.success(), "{}", text(&o));
    let left = json(&lab.gpubook(Some(bob), &["--json", "maintenance", "ls"]));
    assert_eq!(left["maintenance"].as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left["maintenance"][0]["reason"], "BIOS update", "{left}");
    // GPU 3 on Saturday can be booked again.
    json(&book("3", "sat 10:00"));

    // A typo is a usage error before any connection.
    let o = lab.gpubook(
        Some(admin),
        &[
            "maintenance",
            "--gpu",
            "2",
            "--start",
            "sat 8:00",
            "--for",
            "4h",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
