//! `kill -9` under load, again and again: the real agent binary books for several concurrent
//! clients and is killed with SIGKILL at a random moment, then restarted on the same state
//! directory. What a client was told is booked stays booked, exactly as told; no two bookings
//! ever hold a GPU at once; and the event log holds each event once, its numbers strictly
//! increasing and never given out twice, across every restart.

mod common;

use common::{list_all, AgentProcess, Grid, DEADLINE};
use gpubook_client::{ClientError, Connection, Pushed};
use gpubook_core::{Booking, BookingId};
use gpubook_proto::{
    BookRequest, BookingResponse, ErrorKind, Event, EventKind, GpuChoice, Request, Response,
    WhenChoice,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Kills and restarts.
const ROUNDS: usize = 24;
/// Clients booking at once.
const CLIENTS: usize = 4;
/// Simulated GPUs.
const GPUS: u32 = 8;
/// The kill comes up to this long after the load starts.
const MAX_KILL_DELAY_MS: u64 = 250;

/// What one client saw in one round.
#[derive(Debug, Default)]
struct ClientLog {
    /// Bookings the agent answered "booked" to.
    acked: Vec<BookingResponse>,
    /// Requests refused because the GPUs were taken.
    conflicts: usize,
    /// Anything else, which should not happen.
    unexpected: Vec<String>,
}

/// A random booking: 1 to 3 GPUs (named by index or UUID, or counted) for 15 min to 2 h, in a
/// day-long window that moves half a day per round, so each round has room to write and also
/// collides with what earlier rounds booked.
fn random_request(rng: &mut StdRng, grid: Grid, round: usize) -> Request {
    let first = round as i64 * 48 + rng.random_range(0..96);
    let len = rng.random_range(1..=8);
    let count = rng.random_range(1..=3u32);
    let gpus = if rng.random_bool(0.5) {
        let mut all: Vec<u32> = (0..GPUS).collect();
        all.shuffle(rng);
        let gpus = all[..count as usize]
            .iter()
            .map(|&i| {
                if rng.random_bool(0.5) {
                    i.to_string()
                } else {
                    common::sim_uuid(i).0
                }
            })
            .collect();
        GpuChoice::Named { gpus }
    } else {
        GpuChoice::Count {
            count,
            min_memory: None,
        }
    };
    Request::Book(BookRequest {
        gpus,
        when: WhenChoice::At {
            start: grid.at(first),
            end: grid.at(first + len),
        },
        title: format!("round {round}"),
        job: None,
    })
}

/// Books until the agent dies under it. `killed` says the test killed it: a request still
/// unanswered then has an unknown outcome, like one that lost its connection. (Without it, a
/// client could wait forever: see tests/dead_agent.rs.)
async fn client(
    conn: Connection,
    mut rng: StdRng,
    grid: Grid,
    round: usize,
    mut killed: watch::Receiver<bool>,
) -> ClientLog {
    let mut log = ClientLog::default();
    loop {
        let answer = tokio::select! {
            // An answer that came before the kill counts, even if the kill is known too.
            biased;
            a = conn.request(random_request(&mut rng, grid, round)) => a,
            _ = killed.wait_for(|k| *k) => return log,
        };
        match answer {
            Ok(Response::Booking(b)) => log.acked.push(b),
            Err(ClientError::Agent(e)) if e.kind == ErrorKind::Conflict => log.conflicts += 1,
            Err(ClientError::ConnectionLost) => return log,
            other => {
                log.unexpected.push(format!("{other:?}"));
                return log;
            }
        }
    }
}

/// Follows events from `after` until the agent dies.
async fn watcher(conn: Connection, after: u64, mut killed: watch::Receiver<bool>) -> Vec<Event> {
    let subscribed = tokio::select! {
        biased;
        s = conn.subscribe(Some(after), false) => s,
        _ = killed.wait_for(|k| *k) => return Vec::new(),
    };
    let mut rx = match subscribed {
        Ok((_, rx)) => rx,
        Err(ClientError::ConnectionLost) => return Vec::new(),
        Err(e) => panic!("subscribe: {e:?}"),
    };
    let mut seen = Vec::new();
    while let Some(p) = rx.recv().await {
        match p {
            Pushed::Event(e) => seen.push(e),
            Pushed::Readings(_) | Pushed::Log(_) => {}
            Pushed::Error(e) => panic!("the agent pushed an error: {e:?}"),
        }
    }
    seen
}

/// Every booking the clients were told about is listed, exactly as they were told.
async fn assert_acked_survived(agent: &AgentProcess, acked: &BTreeMap<BookingId, Booking>) {
    let conn = agent.connect().await;
    let listed: HashMap<BookingId, Booking> = list_all(&conn)
        .await
        .into_iter()
        .map(|b| (b.id, b))
        .collect();
    for (id, told) in acked {
        match listed.get(id) {
            Some(b) => assert_eq!(b, told, "booking {id} is not as its client was told"),
            None => panic!("booking {id} was confirmed to a client and is gone: {told:?}"),
        }
    }
}

/// Every event from the first, as a new subscriber gets them.
async fn history(agent: &AgentProcess) -> Vec<Event> {
    let conn = agent.connect().await;
    let (latest, mut rx) = conn.subscribe(Some(0), false).await.expect("subscribe");
    let mut events = Vec::new();
    while events.last().is_none_or(|e: &Event| e.seq < latest) {
        events.push(common::next_event(&mut rx).await);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confirmed_bookings_survive_kill_9_under_load() {
    let began = Instant::now();
    let seed: u64 = rand::random();
    eprintln!("crash test: seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let grid = Grid::new();
    let mut agent = AgentProcess::start(GPUS).await;

    let mut acked: BTreeMap<BookingId, Booking> = BTreeMap::new();
    let mut acked_events: BTreeMap<u64, BookingId> = BTreeMap::new();
    let mut watched: Vec<Event> = Vec::new();
    let mut conflicts = 0;
    for round in 0..ROUNDS {
        if round > 0 {
            agent.restart().await;
        }
        assert_acked_survived(&agent, &acked).await;

        let (kill_tx, killed) = watch::channel(false);
        let after = watched.last().map_or(0, |e| e.seq);
        let watch = tokio::spawn(watcher(agent.connect().await, after, killed.clone()));
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let conn = agent.connect().await;
            let rng = StdRng::seed_from_u64(rng.random());
            clients.push(tokio::spawn(client(conn, rng, grid, round, killed.clone())));
        }
        // The random moment of the crash (not a wait for anything).
        tokio::time::sleep(Duration::from_millis(
            rng.random_range(0..=MAX_KILL_DELAY_MS),
        ))
        .await;
        agent.kill();
        kill_tx.send_replace(true);

        for c in clients {
            let log = tokio::time::timeout(DEADLINE, c)
                .await
                .expect("a client did not notice the agent died")
                .expect("client task");
            assert!(
                log.unexpected.is_empty(),
                "round {round}: {:?}",
                log.unexpected
            );
            conflicts += log.conflicts;
            for b in log.acked {
                let id = b.booking.id;
                assert!(
                    acked.insert(id, b.booking.clone()).is_none(),
                    "booking number {id} was given to two bookings"
                );
                assert!(
                    acked_events.insert(b.event, id).is_none(),
                    "event number {} was given to two changes",
                    b.event
                );
            }
        }
        let seen = tokio::time::timeout(DEADLINE, watch)
            .await
            .expect("the watcher did not notice the agent died")
            .expect("watcher task");
        for e in seen {
            if let Some(last) = watched.last() {
                assert!(
                    e.seq > last.seq,
                    "round {round}: event {} came after event {} (repeated or out of order \
                     across a reconnect)",
                    e.seq,
                    last.seq
                );
            }
            watched.push(e);
        }
    }

    agent.restart().await;
    assert_acked_survived(&agent, &acked).await;
    let conn = agent.connect().await;
    let listed = list_all(&conn).await;

    // No two bookings hold a GPU at the same time.
    let mut by_gpu: BTreeMap<String, Vec<&Booking>> = BTreeMap::new();
    for b in listed.iter().filter(|b| b.state.holds_gpus()) {
        for g in &b.gpus {
            by_gpu.entry(g.0.clone()).or_default().push(b);
        }
    }
    for (gpu, mut held) in by_gpu {
        held.sort_by_key(|b| b.interval.start);
        for pair in held.windows(2) {
            assert!(
                pair[0].interval.end <= pair[1].interval.start,
                "bookings {} and {} both hold {gpu}: {:?} and {:?}",
                pair[0].id,
                pair[1].id,
                pair[0].interval,
                pair[1].interval
            );
        }
    }

    // The event log: each event once, numbers strictly increasing.
    let events = history(&agent).await;
    for pair in events.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "event {} is followed by event {}",
            pair[0].seq,
            pair[1].seq
        );
    }
    // Only bookings were made, each written with its one event in one transaction: one
    // "created" event per stored booking, and none for a booking that is not stored.
    let by_seq: HashMap<u64, &Event> = events.iter().map(|e| (e.seq, e)).collect();
    let mut created: HashMap<BookingId, u64> = HashMap::new();
    for e in &events {
        assert_eq!(e.kind, EventKind::BookingCreated, "{e:?}");
        assert!(
            created.insert(e.booking.id, e.seq).is_none(),
            "booking {} was created twice",
            e.booking.id
        );
    }
    for b in &listed {
        let seq = created
            .get(&b.id)
            .unwrap_or_else(|| panic!("booking {} has no event", b.id));
        assert_eq!(
            &by_seq[seq].booking, b,
            "event {seq} and the listing disagree"
        );
    }
    assert_eq!(
        created.len(),
        listed.len(),
        "events for bookings that are not stored"
    );
    // The number a client was given is that booking's event.
    for (seq, id) in &acked_events {
        let e = by_seq
            .get(seq)
            .unwrap_or_else(|| panic!("event {seq}, given to a client, is not in the log"));
        assert_eq!(e.booking.id, *id, "event {seq} was given to booking {id}");
    }
    // A subscriber that resumed with the last number it saw, across every crash, missed
    // nothing and got each event as the log holds it.
    let watched_up_to = watched.last().map_or(0, |e| e.seq);
    let expected: Vec<&Event> = events.iter().filter(|e| e.seq <= watched_up_to).collect();
    assert_eq!(
        watched.iter().collect::<Vec<_>>(),
        expected,
        "the resuming subscriber's events differ from the log"
    );

    // After all that, a new change gets a new number.
    let latest = events.last().map_or(0, |e| e.seq);
    let fresh = common::booked(
        conn.request(common::book_at(
            &["0"],
            grid.at(ROUNDS as i64 * 48 + 200),
            grid.at(ROUNDS as i64 * 48 + 201),
            "after the storm",
        ))
        .await,
    );
    assert!(fresh.event > latest, "event number {} reused", fresh.event);
    assert!(
        listed.iter().all(|b| b.id < fresh.booking.id),
        "booking number {} reused",
        fresh.booking.id
    );

    assert!(
        acked.len() >= ROUNDS,
        "too little load to mean anything: {} bookings",
        acked.len()
    );
    eprintln!(
        "crash test: {ROUNDS} kills, {} bookings confirmed to clients, {} stored, {conflicts} \
         conflicts, {} events, {} seen live by the resuming subscriber, {:.1?}",
        acked.len(),
        listed.len(),
        events.len(),
        watched.len(),
        began.elapsed()
    );
}
