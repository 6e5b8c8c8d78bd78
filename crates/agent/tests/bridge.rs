//! `gpubook-agent bridge`: a client speaking through the bridge's stdin/stdout (as it will over
//! SSH) reaches the agent, is identified as the bridge's user, and gets events pushed.

use gpubook_client::{Connection, Pushed};
use gpubook_proto::{BookRequest, GpuChoice, Request, Response, WhenChoice};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

#[tokio::test]
async fn a_client_through_the_bridge_books_and_hears_events() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
        .args(["serve", "--gpus", "sim:2", "--name", "bridged"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(&socket)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Connection::unix(&socket, "probe").await.is_err() {
        assert!(Instant::now() < deadline, "the agent did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut bridge = Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
        .arg("bridge")
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let to_bridge = bridge.stdin.take().unwrap();
    let from_bridge = bridge.stdout.take().unwrap();
    let conn = Connection::over(from_bridge, to_bridge, "bridge-test")
        .await
        .expect("handshake through the bridge");
    assert_eq!(conn.welcome().server, "bridged");
    assert_eq!(conn.welcome().uid, libc_getuid());

    let (_, mut events) = conn.subscribe(Some(0), false).await.unwrap();
    let start = chrono::Utc::now() + chrono::Duration::hours(2);
    let answer = conn
        .request(Request::Book(BookRequest {
            gpus: GpuChoice::Named {
                gpus: vec!["1".into()],
            },
            when: WhenChoice::At {
                start,
                end: start + chrono::Duration::hours(1),
            },
            title: "over the bridge".into(),
            job: None,
        }))
        .await
        .unwrap();
    let Response::Booking(b) = answer else {
        panic!("expected a booking, got {answer:?}")
    };
    assert_eq!(b.booking.title, "over the bridge");
    let pushed = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the stream is open");
    match pushed {
        Pushed::Event(e) => {
            assert_eq!(e.booking.id, b.booking.id);
            assert_eq!(e.seq, b.event);
        }
        other => panic!("expected the booking's event, got {other:?}"),
    }

    // When the client goes away the bridge ends by itself.
    drop(conn);
    let status = tokio::time::timeout(Duration::from_secs(10), bridge.wait())
        .await
        .expect("the bridge exits when its client leaves")
        .unwrap();
    assert!(status.success(), "bridge exited with {status}");
    agent.kill().await.unwrap();
}

fn libc_getuid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}
