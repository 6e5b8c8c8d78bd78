//! Real Unix users against one shared agent: identity comes from the socket, roles from the
//! policy file's user names and groups. Needs root (to create users and switch to them); CI
//! runs as root and sets GPUBOOK_REQUIRE_ROOT_TESTS=1 so this cannot silently skip there.

mod support;

use gpubook_testkit::{ensure_group, require_root};
use std::process::Output;
use support::{ensure_user, text, Lab};

const ADMIN: &str = "gpb-admin";
const ALICE: &str = "gpb-alice";
const CAROL: &str = "gpb-carol";
const GUEST: &str = "gpb-guest";
const GUESTS_GROUP: &str = "gpb-guests";

fn booking_id(o: &Output) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(o)));
    v["booking"]["id"].to_string()
}

#[test]
fn each_person_is_themselves_and_roles_hold() {
    if !require_root("each_person_is_themselves_and_roles_hold") {
        return;
    }
    ensure_group(GUESTS_GROUP);
    let admin = ensure_user(ADMIN, &[]);
    let alice = ensure_user(ALICE, &[]);
    let carol = ensure_user(CAROL, &[]);
    let guest = ensure_user(GUEST, &[GUESTS_GROUP]);
    let lab = Lab::start(
        &format!(
            "admins = [\"{ADMIN}\"]\nguests = [\"group:{GUESTS_GROUP}\"]\n\
             max_booking = \"4h\"\nover_policy = \"approval\"\n"
        ),
        "sim:4",
    );

    // Identity is each one's own, from the socket.
    for (who, ids, role) in [
        (ADMIN, admin, "admin"),
        (ALICE, alice, "user"),
        (CAROL, carol, "user"),
        (GUEST, guest, "guest"),
    ] {
        let o = lab.gpubook(Some(ids), &["--json", "whoami"]);
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["user"], who, "{}", text(&o));
        assert_eq!(v["uid"], ids.0);
        assert_eq!(v["role"], role, "{}", text(&o));
    }

    // Alice books; the booking is hers, not root's, whatever the request says.
    let o = lab.gpubook(
        Some(alice),
        &[
            "--json",
            "book",
            "--gpu",
            "0",
            "--start",
            "+1h",
            "--for",
            "2h",
            "--title",
            "alice's run",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["booking"]["owner"], ALICE);
    assert_eq!(v["booking"]["state"], "confirmed");
    let alices = booking_id(&o);

    // A guest cannot book.
    let o = lab.gpubook(
        Some(guest),
        &["book", "--gpu", "1", "--start", "+1h", "--for", "1h"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("guest"),
        "{}",
        text(&o)
    );
    // ...but can read.
    let o = lab.gpubook(Some(guest), &["ls"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(ALICE),
        "{}",
        text(&o)
    );

    // Carol cannot cancel Alice's booking; it is still there afterwards.
    let o = lab.gpubook(Some(carol), &["cancel", &alices]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(ALICE),
        "{}",
        text(&o)
    );
    let o = lab.gpubook(Some(carol), &["--json", "ls"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["bookings"][0]["state"], "confirmed", "{}", text(&o));

    // Carol takes the same GPU at the same time: a conflict naming Alice.
    let o = lab.gpubook(
        Some(carol),
        &[
            "--json", "book", "--gpu", "0", "--start", "+1h", "--for", "1h",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let e: serde_json::Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(e["error"]["kind"], "conflict");
    assert_eq!(e["error"]["conflicts"][0]["owner"], ALICE);

    // Beyond policy (max 4h): waits for approval; Alice cannot approve it herself.
    let o = lab.gpubook(
        Some(alice),
        &[
            "--json", "book", "--gpu", "2", "--start", "+1h", "--for", "8h",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["booking"]["state"], "pending_approval", "{}", text(&o));
    assert!(v["booking"]["pending_reason"]
        .as_str()
        .unwrap()
        .contains("4h"));
    let long = booking_id(&o);
    let o = lab.gpubook(Some(alice), &["approve", &long]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // The admin can.
    let o = lab.gpubook(Some(admin), &["--json", "approve", &long]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["booking"]["state"], "confirmed", "{}", text(&o));
    assert_eq!(v["booking"]["owner"], ALICE);

    // The admin may cancel anyone's booking.
    let o = lab.gpubook(Some(admin), &["cancel", &alices]);
    assert!(o.status.success(), "{}", text(&o));
}
