//! Who may change what, and the lab's limits, at the state layer (the socket's caller is root
//! in these tests, and root is always admin; real Unix users over the socket are tested
//! elsewhere). Every refusal leaves the store as it was: checked by opening the database
//! again, as a restarted agent would.

use chrono::{DateTime, Duration, Utc};
use gpubook_agent::clock::ManualClock;
use gpubook_agent::gpu::sim::SimReader;
use gpubook_agent::gpu::GpuReader;
use gpubook_agent::state::State;
use gpubook_agent::store::Store;
use gpubook_core::{
    Actor, Booking, BookingId, BookingState, GpuSelection, GpuUuid, Interval, Op, Policy, Role,
    Rule, When,
};
use gpubook_proto::{ErrorBody, ErrorKind, EventKind};
use std::path::PathBuf;
use std::sync::Arc;
use tempfile::TempDir;

/// Monday 2030-01-07, 08:00 UTC: the start of a quota week is known.
fn monday_8am() -> DateTime<Utc> {
    "2030-01-07T08:00:00Z".parse().unwrap()
}

fn at_hour(h: i64) -> DateTime<Utc> {
    monday_8am() + Duration::hours(h)
}

fn actor(user: &str, role: Role) -> Actor {
    Actor {
        user: user.into(),
        role,
    }
}

/// A state over a store in a temporary directory, under a policy, on a clock at Monday 08:00.
struct Lab {
    /// Holds the database.
    _dir: TempDir,
    /// The database file, to open again.
    db: PathBuf,
    /// The state under test.
    state: State,
    /// The policy, to give roles.
    policy: Policy,
}

impl Lab {
    fn new(policy_toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("agent.db");
        let policy = Policy::from_toml(policy_toml).expect("policy");
        let state = State::load(
            Store::open(&db).unwrap(),
            SimReader::new(4, "lab").inventory(),
            policy.clone(),
            Arc::new(ManualClock::new(monday_8am())),
        )
        .unwrap();
        Self {
            _dir: dir,
            db,
            state,
            policy,
        }
    }

    /// The person as the agent would see them under the policy.
    fn person(&self, user: &str) -> Actor {
        actor(user, self.policy.role_of(user, &[]))
    }

    /// What a freshly opened store holds: the bookings and the latest event number.
    fn stored(&self) -> (Vec<Booking>, u64) {
        let store = Store::open(&self.db).unwrap();
        (store.bookings().unwrap(), store.latest_seq().unwrap())
    }

    fn book(&self, who: &Actor, gpus: &[u32], from: i64, to: i64) -> Result<Booking, ErrorBody> {
        let events = self.state.change(
            who,
            Op::Book {
                gpus: GpuSelection::Named(
                    gpus.iter()
                        .map(|i| GpuUuid(format!("SIM-lab-{i}")))
                        .collect(),
                ),
                when: When::At(Interval::new(at_hour(from), at_hour(to)).unwrap()),
                title: format!("{}'s work", who.user),
                job: None,
            },
        )?;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::BookingCreated);
        Ok(events[0].booking.clone())
    }

    /// `op` by `who` must be refused with `kind`, and nothing stored may change.
    fn refused(&self, who: &Actor, op: Op, kind: ErrorKind) -> ErrorBody {
        let before = self.stored();
        let e = match self.state.change(who, op.clone()) {
            Err(e) => e,
            Ok(events) => panic!("{who:?} {op:?} was allowed: {events:?}"),
        };
        assert_eq!(e.kind, kind, "{op:?}: {e:?}");
        assert_eq!(
            self.stored(),
            before,
            "{op:?} was refused yet changed the store"
        );
        e
    }
}

const USERS: &str = r#"
default_role = "user"
admins = ["root"]
guests = ["carol"]
"#;

#[test]
fn a_user_cannot_change_someone_elses_booking() {
    let lab = Lab::new(USERS);
    let alice = lab.person("alice");
    let bob = lab.person("bob");
    assert_eq!(bob.role, Role::User);
    let hers = lab.book(&alice, &[0], 2, 4).unwrap();
    let id = hers.id;
    for op in [
        Op::Cancel { id },
        Op::Extend {
            id,
            end: at_hour(6),
        },
        Op::Move {
            id,
            interval: Interval::new(at_hour(5), at_hour(7)).unwrap(),
            gpus: None,
        },
        Op::Release { id },
    ] {
        let e = lab.refused(&bob, op, ErrorKind::NotAllowed);
        assert!(
            e.message.contains("alice"),
            "names the owner: {}",
            e.message
        );
    }
    // Approving and denying are an admin's, even for a booking that waits.
    lab.refused(&bob, Op::Approve { id, rev: None }, ErrorKind::NotAllowed);
    lab.refused(
        &bob,
        Op::Deny {
            id,
            reason: Some("mine now".into()),
            rev: None,
        },
        ErrorKind::NotAllowed,
    );
    // Positive controls: alice changes her own, and an admin changes anyone's.
    lab.state
        .change(
            &alice,
            Op::Extend {
                id,
                end: at_hour(5),
            },
        )
        .expect("alice extends her own booking");
    let root = lab.person("root");
    assert_eq!(root.role, Role::Admin);
    let events = lab
        .state
        .change(&root, Op::Cancel { id })
        .expect("an admin cancels");
    assert_eq!(events[0].booking.state, BookingState::Cancelled);
    assert_eq!(events[0].actor.as_deref(), Some("root"));
}

#[test]
fn a_guest_cannot_book_or_change_anything() {
    let lab = Lab::new(USERS);
    let carol = lab.person("carol");
    assert_eq!(carol.role, Role::Guest);
    let alice = lab.person("alice");
    let hers = lab.book(&alice, &[1], 2, 4).unwrap();
    let e = lab.refused(
        &carol,
        Op::Book {
            gpus: GpuSelection::Count {
                count: 1,
                min_memory: None,
            },
            when: When::At(Interval::new(at_hour(10), at_hour(11)).unwrap()),
            title: "just looking".into(),
            job: None,
        },
        ErrorKind::NotAllowed,
    );
    assert!(e.message.contains("guest"), "{}", e.message);
    lab.refused(
        &carol,
        Op::Book {
            gpus: GpuSelection::Count {
                count: 1,
                min_memory: None,
            },
            when: When::Asap(Duration::hours(1)),
            title: "soon".into(),
            job: None,
        },
        ErrorKind::NotAllowed,
    );
    lab.refused(&carol, Op::Cancel { id: hers.id }, ErrorKind::NotAllowed);
    // Even a booking that does not exist: the role is checked first, and nothing is revealed.
    lab.refused(
        &carol,
        Op::Cancel { id: BookingId(999) },
        ErrorKind::NotAllowed,
    );
}

#[test]
fn over_the_weekly_quota_waits_for_approval() {
    let lab = Lab::new(
        r#"
default_role = "user"
weekly_quota_gpu_hours = 10
over_policy = "approval"
"#,
    );
    let bob = lab.person("bob");
    // 2 GPUs x 4 h = 8 GPU-hours: within the quota.
    let first = lab.book(&bob, &[0, 1], 1, 5).unwrap();
    assert_eq!(first.state, BookingState::Confirmed);
    // 2 GPUs x 2 h more = 12 GPU-hours: over; it waits and holds no GPUs.
    let second = lab.book(&bob, &[2, 3], 6, 8).unwrap();
    assert_eq!(second.state, BookingState::PendingApproval);
    let reason = second.pending_reason.clone().unwrap_or_default();
    assert!(reason.contains("quota"), "{reason}");
    // Stored as waiting, so a restarted agent still knows it waits.
    let (stored, _) = lab.stored();
    let waiting = stored.iter().find(|b| b.id == second.id).unwrap();
    assert_eq!(waiting.state, BookingState::PendingApproval);
    // It holds nothing: alice books the same GPUs then.
    let alice = lab.person("alice");
    let hers = lab.book(&alice, &[2, 3], 6, 8).unwrap();
    assert_eq!(hers.state, BookingState::Confirmed);
    // Now it cannot be approved: alice holds the GPUs.
    let root = actor("root", Role::Admin);
    lab.refused(
        &root,
        Op::Approve {
            id: second.id,
            rev: None,
        },
        ErrorKind::Conflict,
    );
}

#[test]
fn over_the_weekly_quota_is_refused_when_the_policy_says_refuse() {
    let lab = Lab::new(
        r#"
default_role = "user"
weekly_quota_gpu_hours = 10
over_policy = "refuse"
"#,
    );
    let bob = lab.person("bob");
    lab.book(&bob, &[0, 1], 1, 5).unwrap();
    let e = lab.refused(
        &bob,
        Op::Book {
            gpus: GpuSelection::Named(vec![GpuUuid("SIM-lab-2".into()), "SIM-lab-3".into()]),
            when: When::At(Interval::new(at_hour(6), at_hour(8)).unwrap()),
            title: "too much".into(),
            job: None,
        },
        ErrorKind::OverPolicy,
    );
    assert_eq!(e.rule, Some(Rule::WeeklyQuota), "{e:?}");
    assert!(e.message.contains("10"), "names the limit: {}", e.message);
    // Extending past the quota is refused the same way.
    let first = lab.stored().0[0].id;
    let e = lab.refused(
        &bob,
        Op::Extend {
            id: first,
            end: at_hour(7),
        },
        ErrorKind::OverPolicy,
    );
    assert_eq!(e.rule, Some(Rule::WeeklyQuota), "{e:?}");
    // Within the quota is still fine (positive control): 2 more GPU-hours make 10.
    let ok = lab.book(&bob, &[2], 6, 8).unwrap();
    assert_eq!(ok.state, BookingState::Confirmed);
}
