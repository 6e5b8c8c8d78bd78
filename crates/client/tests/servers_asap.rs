//! "As soon as possible" across two real agents (separate processes, simulated GPUs): the
//! quotes match where each agent then really places the booking, the soonest wins, and on a
//! tie the server left with fewer idle GPUs wins.

use chrono::{DateTime, Duration, Utc};
use gpubook_client::servers::asap::{choose, quote, AsapAsk, Quote, QuoteError};
use gpubook_client::Connection;
use gpubook_core::time::floor_to;
use gpubook_proto::{BookRequest, GpuChoice, Request, Response, WhenChoice};
use gpubook_testkit::agent::AgentProcess;

fn book_at(gpus: &[&str], start: DateTime<Utc>, end: DateTime<Utc>) -> Request {
    Request::Book(BookRequest {
        gpus: GpuChoice::Named {
            gpus: gpus.iter().map(|g| g.to_string()).collect(),
        },
        when: WhenChoice::At { start, end },
        title: "busy".into(),
        job: None,
    })
}

fn asap(ask: &AsapAsk) -> Request {
    Request::Book(BookRequest {
        gpus: GpuChoice::Count {
            count: ask.count,
            min_memory: ask.min_memory,
        },
        when: WhenChoice::Asap {
            duration_secs: ask.duration.num_seconds(),
        },
        title: "asap".into(),
        job: None,
    })
}

async fn quotes(conns: &[&Connection], ask: &AsapAsk) -> Vec<Result<Quote, QuoteError>> {
    let now = Utc::now();
    let mut out = Vec::new();
    for c in conns {
        out.push(quote(c, ask, now).await);
    }
    out
}

async fn must(conn: &Connection, req: Request) -> gpubook_proto::BookingResponse {
    match conn.request(req).await {
        Ok(Response::Booking(b)) => b,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soonest_server_wins_and_its_agent_agrees() {
    let a = AgentProcess::named("lab-a", 2).await;
    let b = AgentProcess::named("lab-b", 4).await;
    let (ca, cb) = (a.connect().await, b.connect().await);
    let t0 = floor_to(Utc::now(), Duration::minutes(15)) + Duration::minutes(15);
    // lab-a: both GPUs busy for 3 hours from t0; lab-b: three of four busy for 1 hour.
    must(&ca, book_at(&["0", "1"], t0, t0 + Duration::hours(3))).await;
    must(&cb, book_at(&["0", "1", "2"], t0, t0 + Duration::hours(1))).await;

    let ask = AsapAsk {
        count: 2,
        min_memory: None,
        duration: Duration::hours(4),
    };
    let q = quotes(&[&ca, &cb], &ask).await;
    let qa = q[0].as_ref().unwrap();
    let qb = q[1].as_ref().unwrap();
    assert_eq!(qa.interval.start, t0 + Duration::hours(3));
    assert_eq!(qb.interval.start, t0 + Duration::hours(1));
    assert_eq!(qb.idle, 2, "lab-b keeps two GPUs free then");
    assert_eq!(choose(&q), Some(1));

    // The agent decides, and decides the same.
    let booked = must(&cb, asap(&ask)).await.booking;
    assert_eq!(booked.interval, qb.interval);
    assert_eq!(booked.gpus, qb.gpus);

    // Too many GPUs for lab-a: an error for it, a quote for lab-b.
    let big = AsapAsk { count: 3, ..ask };
    let q = quotes(&[&ca, &cb], &big).await;
    assert!(matches!(q[0], Err(QuoteError::Plan(_))), "{:?}", q[0]);
    assert_eq!(choose(&q), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_tie_the_server_left_with_fewer_idle_gpus_wins() {
    let a = AgentProcess::named("lab-a", 4).await;
    let b = AgentProcess::named("lab-b", 2).await;
    let (ca, cb) = (a.connect().await, b.connect().await);
    let ask = AsapAsk {
        count: 2,
        min_memory: None,
        duration: Duration::hours(1),
    };
    let q = quotes(&[&ca, &cb], &ask).await;
    let (qa, qb) = (q[0].as_ref().unwrap(), q[1].as_ref().unwrap());
    assert_eq!(qa.interval.start, qb.interval.start, "both free now");
    assert_eq!((qa.idle, qb.idle), (2, 0));
    assert_eq!(choose(&q), Some(1));
    let booked = must(&cb, asap(&ask)).await.booking;
    assert_eq!(booked.gpus.len(), 2);
    assert!(booked.interval.start - qb.interval.start < Duration::seconds(30));
}
