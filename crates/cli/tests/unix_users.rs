//! Real Unix users against one shared agent: identity comes from the socket, roles from the
//! policy file's user names and groups. Needs root (to create users and switch to them); CI
//! runs as root and sets GPUBOOK_REQUIRE_ROOT_TESTS=1 so this cannot silently skip there.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const ADMIN: &str = "gpb-admin";
const ALICE: &str = "gpb-alice";
const CAROL: &str = "gpb-carol";
const GUEST: &str = "gpb-guest";
const GUESTS_GROUP: &str = "gpb-guests";

fn is_root() -> bool {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() == 0 }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("run setup command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ensure_group(name: &str) {
    if Command::new("getent")
        .args(["group", name])
        .output()
        .unwrap()
        .status
        .success()
    {
        return;
    }
    run_ok(Command::new("groupadd").arg(name));
}

fn ensure_user(name: &str, groups: &[&str]) -> (u32, u32) {
    let exists = Command::new("id")
        .arg(name)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        run_ok(Command::new("useradd").args(["-M", "-N", "-s", "/usr/sbin/nologin", name]));
    }
    for g in groups {
        run_ok(Command::new("usermod").args(["-a", "-G", g, name]));
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, name]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// The agent (as root, with a shared socket) in a temp dir, stopped on drop.
struct Lab {
    /// Holds the state, the socket and the copied CLI.
    _dir: tempfile::TempDir,
    /// The agent's socket.
    socket: PathBuf,
    /// The CLI, where every user can run it.
    cli: PathBuf,
    /// Stops the agent.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The agent's runtime thread.
    agent: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.agent.take() {
            let _ = t.join();
        }
    }
}

impl Lab {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Other users must reach the socket and run the CLI: open the directory to them.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let cli = dir.path().join("gpubook");
        std::fs::copy(env!("CARGO_BIN_EXE_gpubook"), &cli).unwrap();
        std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                "admins = [\"{ADMIN}\"]\nguests = [\"group:{GUESTS_GROUP}\"]\n\
                 max_booking = \"4h\"\nover_policy = \"approval\"\n"
            ),
        )
        .unwrap();
        let socket = dir.path().join("run").join("agent.sock");
        let config = gpubook_agent::AgentConfig {
            state_dir: dir.path().join("state"),
            socket: socket.clone(),
            gpus: "sim:4".parse().unwrap(),
            policy: Some(policy),
            server_name: "lab-test".into(),
            shared: true,
            sample_interval: Duration::from_secs(1),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let agent = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let clock = std::sync::Arc::new(gpubook_agent::clock::SystemClock);
                let agent = gpubook_agent::server::bind(config, clock).await.unwrap();
                agent
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let lab = Lab {
            _dir: dir,
            socket,
            cli,
            stop: Some(stop),
            agent: Some(agent),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !lab.as_user(None, &["whoami"]).status.success() {
            assert!(Instant::now() < deadline, "the agent did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        lab
    }

    /// Runs the CLI as `user` (uid, gid), or as root.
    fn as_user(&self, user: Option<(u32, u32)>, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.cli);
        cmd.arg("--server")
            .arg(format!("unix:{}", self.socket.display()))
            .args(args)
            .env_remove("GPUBOOK_SERVER")
            .env("TZ", "UTC");
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        cmd.output().expect("run gpubook")
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn booking_id(o: &Output) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(o)));
    v["booking"]["id"].to_string()
}

#[test]
fn each_person_is_themselves_and_roles_hold() {
    if !is_root() {
        assert!(
            std::env::var_os("GPUBOOK_REQUIRE_ROOT_TESTS").is_none(),
            "GPUBOOK_REQUIRE_ROOT_TESTS is set but the tests do not run as root"
        );
        eprintln!("skipped: creating Unix users needs root (CI runs this as root)");
        return;
    }
    ensure_group(GUESTS_GROUP);
    let admin = ensure_user(ADMIN, &[]);
    let alice = ensure_user(ALICE, &[]);
    let carol = ensure_user(CAROL, &[]);
    let guest = ensure_user(GUEST, &[GUESTS_GROUP]);
    let lab = Lab::start();

    // Identity is each one's own, from the socket.
    for (who, ids, role) in [
        (ADMIN, admin, "admin"),
        (ALICE, alice, "user"),
        (CAROL, carol, "user"),
        (GUEST, guest, "guest"),
    ] {
        let o = lab.as_user(Some(ids), &["--json", "whoami"]);
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["user"], who, "{}", text(&o));
        assert_eq!(v["uid"], ids.0);
        assert_eq!(v["role"], role, "{}", text(&o));
    }

    // Alice books; the booking is hers, not root's, whatever the request says.
    let o = lab.as_user(
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
    let o = lab.as_user(
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
    let o = lab.as_user(Some(guest), &["ls"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(ALICE),
        "{}",
        text(&o)
    );

    // Carol cannot cancel Alice's booking; it is still there afterwards.
    let o = lab.as_user(Some(carol), &["cancel", &alices]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(ALICE),
        "{}",
        text(&o)
    );
    let o = lab.as_user(Some(carol), &["--json", "ls"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["bookings"][0]["state"], "confirmed", "{}", text(&o));

    // Carol takes the same GPU at the same time: a conflict naming Alice.
    let o = lab.as_user(
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
    let o = lab.as_user(
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
    let o = lab.as_user(Some(alice), &["approve", &long]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // The admin can.
    let o = lab.as_user(Some(admin), &["--json", "approve", &long]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["booking"]["state"], "confirmed", "{}", text(&o));
    assert_eq!(v["booking"]["owner"], ALICE);

    // The admin may cancel anyone's booking.
    let o = lab.as_user(Some(admin), &["cancel", &alices]);
    assert!(o.status.success(), "{}", text(&o));
}
