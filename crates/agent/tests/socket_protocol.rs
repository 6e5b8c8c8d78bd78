//! Bad input over the real socket of the real agent binary. Each gets a typed error a program
//! can match on, the agent stays up (a new connection still works), and nothing stored
//! changes: the bookings and the latest event number are the same before and after.

mod common;

use common::{book_at, list_all, snapshot, AgentProcess, Grid};
use gpubook_client::ClientError;
use gpubook_core::{Actor, Booking, Conflict, GpuSelection, Interval, Op, Role, When};
use gpubook_proto::{
    AgentFrame, BookRequest, ClientFrame, ErrorBody, ErrorKind, ExtendRequest, GpuChoice,
    ListRequest, Request, Response, WhenChoice, MAX_FRAME, PROTOCOL_MAJOR,
};

/// An agent with 4 simulated GPUs and one booking by alice (another person): GPU 1, slots
/// 8 to 16 of `grid`, titled "alice's run".
async fn agent_with_alice(grid: Grid) -> (AgentProcess, Booking) {
    let mut alice_booking = None;
    let dir = common::seeded(4, |state| {
        let alice = Actor {
            user: "alice".into(),
            role: Role::User,
        };
        let events = state
            .change(
                &alice,
                Op::Book {
                    gpus: GpuSelection::Named(vec![common::sim_uuid(1)]),
                    when: When::At(Interval::new(grid.at(8), grid.at(16)).unwrap()),
                    title: "alice's run".into(),
                    job: None,
                },
            )
            .expect("alice books");
        alice_booking = Some(events[0].booking.clone());
    });
    let agent = AgentProcess::start_in(dir, 4).await;
    let alice = alice_booking.expect("alice's booking");
    // The agent loaded what was stored before it started.
    assert_eq!(snapshot(&agent).await.bookings, vec![alice.clone()]);
    (agent, alice)
}

/// Sends `req` on a fresh connection and expects a refusal of `kind`; checks the connection
/// still answers, and that a new connection sees exactly the state from before.
async fn refused(agent: &AgentProcess, req: Request, kind: ErrorKind) -> ErrorBody {
    let before = snapshot(agent).await;
    let conn = agent.connect().await;
    let e = match conn.request(req.clone()).await {
        Err(ClientError::Agent(e)) => e,
        other => panic!("{req:?}: expected a {kind} error, got {other:?}"),
    };
    assert_eq!(e.kind, kind, "{req:?}: {e:?}");
    assert!(
        !e.message.trim().is_empty(),
        "an error without words: {e:?}"
    );
    // The same connection goes on answering.
    list_all(&conn).await;
    assert_eq!(
        snapshot(agent).await,
        before,
        "{req:?} was refused yet changed what is stored"
    );
    e
}

fn list_frame(id: u64) -> ClientFrame {
    ClientFrame::Request {
        id,
        body: Request::List(ListRequest {
            include_past: true,
            ..ListRequest::default()
        }),
    }
}

fn expect_error(frame: Option<AgentFrame>) -> (Option<u64>, ErrorBody) {
    match frame {
        Some(AgentFrame::Error { id, error }) => (id, error),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_frame_that_is_not_json_gets_malformed_and_the_connection_stays_usable() {
    let grid = Grid::new();
    let (agent, _) = agent_with_alice(grid).await;
    let before = snapshot(&agent).await;

    let mut raw = common::raw(&agent).await;
    raw.handshake().await;
    raw.send_body(b"{this is not json").await;
    let (id, e) = expect_error(raw.recv().await);
    assert_eq!(e.kind, ErrorKind::Malformed, "{e:?}");
    assert_eq!(id, None);

    // Bytes that are not even UTF-8.
    raw.send_body(&[0xff, 0xfe, 0x00, 0x80]).await;
    let (_, e) = expect_error(raw.recv().await);
    assert_eq!(e.kind, ErrorKind::Malformed, "{e:?}");

    // The same connection still takes a valid request.
    raw.send(&list_frame(5)).await;
    match raw.recv().await {
        Some(AgentFrame::Response {
            id: 5,
            body: Response::Bookings(b),
        }) => assert_eq!(b.bookings, before.bookings),
        other => panic!("expected the list for request 5, got {other:?}"),
    }
    assert_eq!(snapshot(&agent).await, before);
}

#[tokio::test]
async fn a_request_that_cannot_be_parsed_gets_invalid_with_its_id() {
    let (agent, _) = agent_with_alice(Grid::new()).await;
    let before = snapshot(&agent).await;
    let mut raw = common::raw(&agent).await;
    raw.handshake().await;
    // A book request without its GPUs or time.
    raw.send_body(br#"{"type":"request","id":3,"body":{"type":"book"}}"#)
        .await;
    let (id, e) = expect_error(raw.recv().await);
    assert_eq!(e.kind, ErrorKind::Invalid, "{e:?}");
    assert_eq!(id, Some(3));
    raw.send(&list_frame(4)).await;
    assert!(matches!(
        raw.recv().await,
        Some(AgentFrame::Response { id: 4, .. })
    ));
    assert_eq!(snapshot(&agent).await, before);
}

#[tokio::test]
async fn a_truncated_frame_does_not_take_the_agent_down() {
    let (mut agent, _) = agent_with_alice(Grid::new()).await;
    let before = snapshot(&agent).await;

    // After the handshake: the length says 100, 10 bytes come, then the client is gone.
    // Whatever the agent says before it closes, it says as a typed error.
    let mut bytes = 100u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(br#"{"type":"r"#);
    let mut raw = common::raw(&agent).await;
    raw.handshake().await;
    raw.send_bytes(&bytes).await;
    for f in raw.close().await {
        assert!(matches!(f, AgentFrame::Error { .. }), "{f:?}");
    }

    // In place of the hello.
    let mut raw = common::raw(&agent).await;
    raw.send_bytes(&bytes).await;
    for f in raw.close().await {
        assert!(matches!(f, AgentFrame::Error { .. }), "{f:?}");
    }

    // Half a length.
    let mut raw = common::raw(&agent).await;
    raw.handshake().await;
    raw.send_bytes(&[0, 0]).await;
    for f in raw.close().await {
        assert!(matches!(f, AgentFrame::Error { .. }), "{f:?}");
    }

    assert_eq!(snapshot(&agent).await, before);
    assert!(agent.running(), "the agent exited:\n{}", agent.log());
}

#[tokio::test]
async fn an_oversized_frame_gets_too_large_and_the_connection_is_closed() {
    let (mut agent, _) = agent_with_alice(Grid::new()).await;
    let before = snapshot(&agent).await;
    let header = ((MAX_FRAME + 1) as u32).to_be_bytes();

    let mut raw = common::raw(&agent).await;
    raw.handshake().await;
    raw.send_bytes(&header).await;
    let (_, e) = expect_error(raw.recv().await);
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e:?}");
    raw.expect_closed().await;

    // A frame of exactly the limit is read (it is not JSON, so it is malformed, not too large).
    let mut raw = common::raw(&agent).await;
    raw.handshake().await;
    raw.send_body(&vec![b' '; MAX_FRAME]).await;
    let (_, e) = expect_error(raw.recv().await);
    assert_eq!(e.kind, ErrorKind::Malformed, "{e:?}");

    assert_eq!(snapshot(&agent).await, before);
    assert!(agent.running(), "the agent exited:\n{}", agent.log());
}

#[tokio::test]
async fn an_oversized_hello_gets_one_too_large_error_then_the_connection_is_closed() {
    let (mut agent, _) = agent_with_alice(Grid::new()).await;
    let before = snapshot(&agent).await;
    let mut raw = common::raw(&agent).await;
    raw.send_bytes(&u32::MAX.to_be_bytes()).await;
    let (_, e) = expect_error(raw.recv().await);
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e:?}");
    // One frame, one answer: nothing more (such as a second, different error) before the close.
    raw.expect_closed().await;
    assert_eq!(snapshot(&agent).await, before);
    assert!(agent.running(), "the agent exited:\n{}", agent.log());
}

#[tokio::test]
async fn an_unknown_request_type_gets_unknown_request_with_its_id() {
    let (agent, _) = agent_with_alice(Grid::new()).await;
    let before = snapshot(&agent).await;
    let mut raw = common::raw(&agent).await;
    raw.handshake().await;
    raw.send_body(br#"{"type":"request","id":7,"body":{"type":"teleport","to":"mars"}}"#)
        .await;
    let (id, e) = expect_error(raw.recv().await);
    assert_eq!(e.kind, ErrorKind::UnknownRequest, "{e:?}");
    assert_eq!(id, Some(7));
    assert!(e.message.contains("teleport"), "{}", e.message);

    // An unknown frame type, too.
    raw.send_body(br#"{"type":"gossip","id":8}"#).await;
    let (id, e) = expect_error(raw.recv().await);
    assert_eq!(e.kind, ErrorKind::UnknownRequest, "{e:?}");
    assert_eq!(id, Some(8));

    // The connection stays open.
    raw.send(&list_frame(9)).await;
    assert!(matches!(
        raw.recv().await,
        Some(AgentFrame::Response { id: 9, .. })
    ));
    assert_eq!(snapshot(&agent).await, before);
}

#[tokio::test]
async fn a_different_protocol_major_is_incompatible_and_closed() {
    let (agent, _) = agent_with_alice(Grid::new()).await;
    let before = snapshot(&agent).await;
    for major in [PROTOCOL_MAJOR + 1, PROTOCOL_MAJOR.wrapping_sub(1), 999] {
        let mut raw = common::raw(&agent).await;
        raw.send_hello(major).await;
        let (_, e) = expect_error(raw.recv().await);
        assert_eq!(e.kind, ErrorKind::Incompatible, "major {major}: {e:?}");
        assert!(e.message.contains("protocol"), "{}", e.message);
        raw.expect_closed().await;
    }
    assert_eq!(snapshot(&agent).await, before);
}

#[tokio::test]
async fn a_request_before_hello_is_refused_and_not_applied() {
    let grid = Grid::new();
    let (agent, _) = agent_with_alice(grid).await;
    let before = snapshot(&agent).await;
    let mut raw = common::raw(&agent).await;
    raw.send(&ClientFrame::Request {
        id: 1,
        body: book_at(&["0"], grid.at(0), grid.at(4), "sneaky"),
    })
    .await;
    let (_, e) = expect_error(raw.recv().await);
    assert!(
        matches!(e.kind, ErrorKind::Malformed | ErrorKind::Invalid),
        "{e:?}"
    );
    assert!(e.message.contains("hello"), "{}", e.message);
    raw.expect_closed().await;
    assert_eq!(snapshot(&agent).await, before);
}

#[tokio::test]
async fn an_end_not_after_the_start_is_invalid() {
    let grid = Grid::new();
    let (agent, _) = agent_with_alice(grid).await;
    let e = refused(
        &agent,
        book_at(&["0"], grid.at(4), grid.at(4), "empty"),
        ErrorKind::Invalid,
    )
    .await;
    assert!(e.message.contains("end"), "{}", e.message);
    refused(
        &agent,
        book_at(&["0"], grid.at(4), grid.at(2), "backwards"),
        ErrorKind::Invalid,
    )
    .await;
}

#[tokio::test]
async fn a_start_in_the_past_is_invalid() {
    let grid = Grid::new();
    let (agent, _) = agent_with_alice(grid).await;
    // Slot -100 is a day ago less an hour: 25 hours before slot 0.
    let e = refused(
        &agent,
        book_at(&["0"], grid.at(-100), grid.at(-98), "yesterday"),
        ErrorKind::Invalid,
    )
    .await;
    assert!(e.message.contains("past"), "{}", e.message);
}

#[tokio::test]
async fn an_unknown_gpu_is_not_found() {
    let grid = Grid::new();
    let (agent, _) = agent_with_alice(grid).await;
    for gpu in ["4", "17", "GPU-00000000-no-such-gpu", ""] {
        let e = refused(
            &agent,
            book_at(&[gpu], grid.at(0), grid.at(4), "nowhere"),
            ErrorKind::NotFound,
        )
        .await;
        assert!(e.message.contains("GPU"), "{}", e.message);
    }
}

#[tokio::test]
async fn a_gpu_named_twice_is_invalid() {
    let grid = Grid::new();
    let (agent, _) = agent_with_alice(grid).await;
    let uuid = common::sim_uuid(2).0;
    for gpus in [
        vec!["2", "2"],
        vec!["2", uuid.as_str()],
        vec!["0", "3", "0"],
    ] {
        refused(
            &agent,
            book_at(&gpus, grid.at(0), grid.at(4), "twice"),
            ErrorKind::Invalid,
        )
        .await;
    }
}

#[tokio::test]
async fn zero_gpus_is_invalid() {
    let grid = Grid::new();
    let (agent, _) = agent_with_alice(grid).await;
    let when = WhenChoice::At {
        start: grid.at(0),
        end: grid.at(4),
    };
    for gpus in [
        GpuChoice::Count {
            count: 0,
            min_memory: None,
        },
        GpuChoice::Named { gpus: Vec::new() },
    ] {
        refused(
            &agent,
            Request::Book(BookRequest {
                gpus,
                when: when.clone(),
                title: "nothing".into(),
                job: None,
            }),
            ErrorKind::Invalid,
        )
        .await;
    }
    // "As soon as possible" with no GPUs, too.
    refused(
        &agent,
        Request::Book(BookRequest {
            gpus: GpuChoice::Count {
                count: 0,
                min_memory: None,
            },
            when: WhenChoice::Asap {
                duration_secs: 3600,
            },
            title: "nothing soon".into(),
            job: None,
        }),
        ErrorKind::Invalid,
    )
    .await;
}

#[tokio::test]
async fn more_gpus_than_the_server_has_is_invalid() {
    let grid = Grid::new();
    let (agent, _) = agent_with_alice(grid).await;
    for when in [
        WhenChoice::At {
            start: grid.at(0),
            end: grid.at(4),
        },
        WhenChoice::Asap {
            duration_secs: 3600,
        },
    ] {
        let e = refused(
            &agent,
            Request::Book(BookRequest {
                gpus: GpuChoice::Count {
                    count: 5,
                    min_memory: None,
                },
                when,
                title: "greedy".into(),
                job: None,
            }),
            ErrorKind::Invalid,
        )
        .await;
        assert!(
            e.message.contains('4'),
            "says how many there are: {}",
            e.message
        );
    }
}

#[tokio::test]
async fn an_overlap_is_a_conflict_naming_owner_gpus_and_times() {
    let grid = Grid::new();
    let (agent, alice) = agent_with_alice(grid).await;
    // GPUs 1 and 2 from slot 12 to 20; alice holds GPU 1 from 8 to 16.
    let e = refused(
        &agent,
        book_at(&["1", "2"], grid.at(12), grid.at(20), "mine"),
        ErrorKind::Conflict,
    )
    .await;
    assert_eq!(
        e.conflicts,
        vec![Conflict {
            booking: alice.id,
            owner: "alice".into(),
            gpus: vec![common::sim_uuid(1)],
            interval: Interval::new(grid.at(8), grid.at(16)).unwrap(),
            title: "alice's run".into(),
        }]
    );
    assert!(e.message.contains("alice"), "{}", e.message);

    // Touching is not overlapping: [16, 20) on GPU 1 is free (positive control).
    let conn = agent.connect().await;
    common::booked(
        conn.request(book_at(&["1"], grid.at(16), grid.at(20), "after alice"))
            .await,
    );
}

#[tokio::test]
async fn extending_into_someone_elses_booking_is_a_conflict() {
    let grid = Grid::new();
    let (agent, alice) = agent_with_alice(grid).await;
    let conn = agent.connect().await;
    let mine = common::booked(
        conn.request(book_at(&["1"], grid.at(0), grid.at(4), "before alice"))
            .await,
    )
    .booking;
    let e = refused(
        &agent,
        Request::Extend(ExtendRequest {
            id: mine.id,
            end: grid.at(10),
        }),
        ErrorKind::Conflict,
    )
    .await;
    assert_eq!(e.conflicts.len(), 1, "{e:?}");
    let c = &e.conflicts[0];
    assert_eq!(c.booking, alice.id);
    assert_eq!(c.owner, "alice");
    assert_eq!(c.gpus, vec![common::sim_uuid(1)]);
    assert_eq!(c.interval, alice.interval);

    // Up to alice's start is fine (positive control).
    let extended = common::booked(
        conn.request(Request::Extend(ExtendRequest {
            id: mine.id,
            end: grid.at(8),
        }))
        .await,
    );
    assert_eq!(extended.booking.interval.end, grid.at(8));
}
