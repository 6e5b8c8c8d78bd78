//! Whom a client talks to on a local socket: only an agent that root or the person runs, as
//! the kernel reports the connected socket's peer (SO_PEERCRED), and a `/tmp/gpubook-UID`
//! fallback directory only when it is UID's own with mode 0700. Real Unix sockets; the test
//! with a listener of another uid needs root (it fails instead of skipping where
//! GPUBOOK_REQUIRE_ROOT_TESTS is set, as in CI).

use gpubook_client::connection::{check_agent_uid, ForeignAgent};
use gpubook_client::{ClientError, Connection};
use gpubook_proto::paths;
use gpubook_testkit::{require_root, wait_until_blocking, DEADLINE};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The uid the foreign listener runs as: `nobody`'s on Debian and most others (the kernel
/// needs no passwd entry for it).
const OTHER_UID: u32 = 65534;

/// Tells the helper test below, run as another process, to listen at this path.
const LISTEN_AT: &str = "GPUBOOK_TEST_LISTEN_AT";

fn me() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// Reads one connection's first frame (or nothing) and reports how many bytes came.
fn bytes_of_one_connection(listener: &UnixListener) -> usize {
    let (mut s, _) = listener.accept().unwrap();
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return 0;
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    4 + body.len()
    // Dropped without an answer: the client hears the connection is lost.
}

/// Not a test on its own: listens at `$GPUBOOK_TEST_LISTEN_AT` for two connections and prints
/// how many bytes each sent, when the test below runs this binary as another uid.
#[test]
fn listener_helper() {
    let Some(path) = std::env::var_os(LISTEN_AT) else {
        return;
    };
    // Never outlive a test that failed before its second connection.
    std::thread::spawn(|| {
        std::thread::sleep(DEADLINE);
        std::process::exit(3);
    });
    let listener = UnixListener::bind(&path).unwrap();
    for _ in 0..2 {
        println!("HELPER got {}", bytes_of_one_connection(&listener));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_served_by_another_uid_is_refused_before_anything_is_sent() {
    if !require_root("a_socket_served_by_another_uid_is_refused_before_anything_is_sent") {
        return;
    }
    // This test binary, copied where the other uid may run it, listening in a directory of
    // that uid's (as a user who made /tmp/gpubook-ME first, or any path a client is sent to).
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = tmp.path().join("helper");
    std::fs::copy(std::env::current_exe().unwrap(), &bin).unwrap();
    let dir = tmp.path().join("theirs");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    let socket = dir.join("agent.sock");
    let helper = Command::new(&bin)
        .args([
            "--exact",
            "listener_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LISTEN_AT, &socket)
        .uid(OTHER_UID)
        .gid(OTHER_UID)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_until_blocking("the other uid's listener", || socket.exists());
    assert_eq!(std::fs::metadata(&socket).unwrap().uid(), OTHER_UID);

    // Refused, naming who serves it.
    let e = Connection::unix(&socket, "trust-test").await.unwrap_err();
    let foreign = e
        .foreign_agent()
        .unwrap_or_else(|| panic!("expected a foreign agent, got {e:?}"));
    assert_eq!(
        foreign,
        &ForeignAgent {
            path: socket.clone(),
            uid: OTHER_UID,
            me: 0,
        }
    );
    assert_eq!(e.kind(), gpubook_proto::ErrorKind::NotAllowed);
    let text = e.to_string();
    assert!(text.contains(&format!("uid {OTHER_UID}")), "{text}");
    assert!(!text.contains("Is it running"), "{text}");

    // Named as the agent's uid by the caller, the same socket gets the hello.
    match Connection::unix_served_by(&socket, "trust-test", OTHER_UID).await {
        Err(ClientError::ConnectionLost) => {}
        other => panic!("expected the hello to be sent and the line dropped, got {other:?}"),
    }

    let out = helper.wait_with_output().unwrap();
    assert!(out.status.success(), "the helper failed");
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        // The harness may have begun the line ("test listener_helper ... ").
        .filter_map(|l| l.split_once("HELPER got ").map(|(_, n)| n.to_string()))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], "0", "nothing is sent to a foreign agent");
    assert_ne!(got[1], "0", "the hello is sent to a named one");
}

#[test]
fn an_agent_of_neither_root_nor_oneself_is_refused_by_the_check() {
    let path = Path::new("/tmp/somewhere/agent.sock");
    let me = 1000;
    assert_eq!(check_agent_uid(path, 0, me, None), Ok(()));
    assert_eq!(check_agent_uid(path, me, me, None), Ok(()));
    let e = check_agent_uid(path, me + 1, me, None).unwrap_err();
    assert_eq!(
        e,
        ForeignAgent {
            path: path.to_path_buf(),
            uid: me + 1,
            me,
        }
    );
    assert!(e.to_string().contains("uid 1001"), "{e}");
    // Root is no exception: another user's agent is not root's either, unless named.
    assert!(check_agent_uid(path, me, 0, None).is_err());
    assert_eq!(check_agent_uid(path, me, 0, Some(me)), Ok(()));
}

/// A listener of this process's own, which records how many bytes one connection sent.
fn own_listener(socket: &Path) -> std::thread::JoinHandle<usize> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || bytes_of_one_connection(&listener))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ones_own_socket_gets_the_hello() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("agent.sock");
    let got = own_listener(&socket);
    match Connection::unix(&socket, "trust-test").await {
        Err(ClientError::ConnectionLost) => {}
        other => panic!("expected the hello to be sent and the line dropped, got {other:?}"),
    }
    assert!(got.join().unwrap() > 4);
}

/// `/tmp/gpubook-UID` for a uid no one has, removed on drop.
struct Fallback {
    /// The directory.
    dir: PathBuf,
    /// Its uid.
    uid: u32,
}

impl Fallback {
    /// The `n`th of this process (tests run at once, each with its own).
    fn new(n: u32) -> Self {
        let uid = u32::MAX - 10 * (std::process::id() % 100_000) - n;
        let dir = paths::tmp_runtime_dir(uid);
        let _ = std::fs::remove_dir_all(&dir);
        Self { dir, uid }
    }
}

impl Drop for Fallback {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tmp_fallback_made_by_someone_else_is_refused_before_connecting() {
    // The would-be agent's uid finds /tmp/gpubook-UID made (and listened in) by this user.
    let f = Fallback::new(1);
    std::fs::create_dir(&f.dir).unwrap();
    std::fs::set_permissions(&f.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = f.dir.join("agent.sock");
    let got = own_listener(&socket);
    let e = Connection::unix(&socket, "trust-test").await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&format!("belongs to uid {}", me())), "{text}");
    assert!(text.contains(&f.dir.display().to_string()), "{text}");
    assert_eq!(e.kind(), gpubook_proto::ErrorKind::NotAllowed);
    // Nothing connected: wake the listener to see it got nothing.
    drop(std::os::unix::net::UnixStream::connect(&socket).unwrap());
    assert_eq!(got.join().unwrap(), 0);
}

#[test]
fn the_tmp_fallback_is_made_private_and_a_foreign_or_loose_one_is_refused() {
    // Only this test reads the variable in this binary.
    std::env::remove_var("XDG_RUNTIME_DIR");
    let f = Fallback::new(2);
    assert_eq!(paths::runtime_dir(f.uid), f.dir);

    // Made first by someone else (this test's user, for another uid): refused.
    std::fs::create_dir(&f.dir).unwrap();
    std::fs::set_permissions(&f.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let e = paths::checked_runtime_dir(f.uid).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(
        e.to_string().contains(&format!("belongs to uid {}", me())),
        "{e}"
    );
    std::fs::remove_dir(&f.dir).unwrap();

    // One's own, absent: made with mode 0700. The test's uid's real directory is used only
    // when absent, and removed again.
    let own = paths::tmp_runtime_dir(me());
    if !own.exists() {
        let dir = paths::checked_runtime_dir(me()).unwrap();
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        let _ = std::fs::remove_dir(&dir);
        assert_eq!(dir, own);
        assert!(meta.is_dir());
        assert_eq!(meta.uid(), me());
        assert_eq!(meta.mode() & 0o777, 0o700);
    }

    if me() != 0 {
        return;
    }
    // As root: the uid's own but loose, or a link, is refused; its own with 0700 is used.
    std::fs::create_dir(&f.dir).unwrap();
    std::os::unix::fs::chown(&f.dir, Some(f.uid), None).unwrap();
    std::fs::set_permissions(&f.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = paths::checked_runtime_dir(f.uid).unwrap_err();
    assert!(e.to_string().contains("has mode 755"), "{e}");
    std::fs::set_permissions(&f.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(paths::checked_runtime_dir(f.uid).unwrap(), f.dir);
    std::fs::remove_dir(&f.dir).unwrap();
    let target = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(target.path(), Some(f.uid), None).unwrap();
    std::os::unix::fs::symlink(target.path(), &f.dir).unwrap();
    let e = paths::checked_runtime_dir(f.uid).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    std::fs::remove_file(&f.dir).unwrap();
}
