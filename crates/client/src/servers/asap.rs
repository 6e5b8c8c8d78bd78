//! "As soon as possible" across servers: where would N GPUs for a duration start soonest?
//!
//! Each server is quoted without a new protocol request: the client reads the server's GPUs,
//! policy (with the person's role) and bookings, rebuilds the server's plan with the pure
//! [`gpubook_core::Plan`] and asks it to place the request, exactly as the agent would. The
//! quote is only advice: the request is then sent to the chosen server as an ordinary
//! "as soon as possible" booking, and that agent decides, so a booking made elsewhere in
//! between costs nothing but a later start.
//!
//! Choice: the soonest start among servers where the booking would be confirmed; ties go to
//! the server leaving the fewest GPUs idle over that interval, then to the earlier server in
//! the list. A server where it would wait for an admin's approval is chosen only when none
//! would confirm it (an approval may never come).

use crate::connection::{ClientError, Connection};
use chrono::{DateTime, Duration, Utc};
use gpubook_core::{
    Actor, Booking, BookingState, Gpu, GpuSelection, GpuUuid, Interval, Op, Plan, PlanError,
    Policy, When,
};
use gpubook_proto::{GpusRequest, ListRequest, PolicyRequest, Request, Response};
use thiserror::Error;

/// What is asked: `count` GPUs with at least `min_memory` bytes each, for `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsapAsk {
    /// How many GPUs.
    pub count: u32,
    /// Minimum memory per GPU, in bytes.
    pub min_memory: Option<u64>,
    /// How long.
    pub duration: Duration,
}

/// Where and when one server would place the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The start and end the plan found.
    pub interval: Interval,
    /// The GPUs it would pick.
    pub gpus: Vec<GpuUuid>,
    /// GPUs of the server that would still be free over the whole interval.
    pub idle: usize,
    /// Whether it would wait for an admin's approval (over the lab's policy).
    pub needs_approval: bool,
}

/// Why a server could not be quoted.
#[derive(Debug, Error)]
pub enum QuoteError {
    /// The server could not be asked.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The server cannot take this request (too few GPUs, over a policy that refuses, ...).
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// The quote for `ask` on a server with `gpus`, `policy` and `bookings`, as `actor` at `now`.
pub fn quote_plan(
    gpus: Vec<Gpu>,
    policy: Policy,
    bookings: Vec<Booking>,
    actor: &Actor,
    ask: &AsapAsk,
    now: DateTime<Utc>,
) -> Result<Quote, PlanError> {
    let all: Vec<GpuUuid> = gpus.iter().map(|g| g.uuid.clone()).collect();
    let mut plan = Plan::new(gpus, policy, bookings);
    let id = plan.next_id();
    let changes = plan.apply(
        actor,
        Op::Book {
            gpus: GpuSelection::Count {
                count: ask.count,
                min_memory: ask.min_memory,
            },
            when: When::Asap(ask.duration),
            title: String::new(),
            job: None,
        },
        now,
    )?;
    let b = changes
        .into_iter()
        .map(|c| c.booking)
        .find(|b| b.id == id)
        .ok_or_else(|| PlanError::Invalid("the plan made no booking".into()))?;
    // Afterwards the picked GPUs are held, so they do not count as idle.
    let idle = all
        .iter()
        .filter(|g| {
            plan.conflicts(std::slice::from_ref(*g), &b.interval, None)
                .is_empty()
        })
        .count();
    Ok(Quote {
        interval: b.interval,
        gpus: b.gpus,
        idle,
        needs_approval: b.state == BookingState::PendingApproval,
    })
}

/// The quote for `ask` on the server behind `conn`, from its GPUs, policy and bookings.
pub async fn quote(
    conn: &Connection,
    ask: &AsapAsk,
    now: DateTime<Utc>,
) -> Result<Quote, QuoteError> {
    let unexpected =
        |what: &str, r: Response| ClientError::Protocol(format!("expected {what}, got {r:?}"));
    let gpus = match conn.request(Request::Gpus(GpusRequest {})).await? {
        Response::Gpus(g) => g.gpus,
        other => return Err(unexpected("GPUs", other).into()),
    };
    let (policy, role) = match conn.request(Request::Policy(PolicyRequest {})).await? {
        Response::Policy(p) => (p.policy, p.role),
        other => return Err(unexpected("the policy", other).into()),
    };
    // From eight days back, so that this week's GPU-hours count towards the quota as the
    // agent counts them.
    let bookings = conn
        .list_all(ListRequest {
            range: Interval::new(now - Duration::days(8), DateTime::<Utc>::MAX_UTC),
            include_past: true,
            ..ListRequest::default()
        })
        .await?
        .bookings;
    let actor = Actor {
        user: conn.welcome().user.clone(),
        role,
    };
    Ok(quote_plan(gpus, policy, bookings, &actor, ask, now)?)
}

/// The index of the best quote (see the module's doc), if any server can take the request.
pub fn choose<E>(quotes: &[Result<Quote, E>]) -> Option<usize> {
    quotes
        .iter()
        .enumerate()
        .filter_map(|(i, q)| q.as_ref().ok().map(|q| (i, q)))
        .min_by_key(|(i, q)| (q.needs_approval, q.interval.start, q.idle, *i))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpubook_core::{BookingId, Role};

    fn gpus(server: &str, n: u32, mem: u64) -> Vec<Gpu> {
        (0..n)
            .map(|i| Gpu {
                uuid: GpuUuid(format!("{server}-{i}")),
                index: i,
                name: "test".into(),
                memory_total: mem,
                server: server.into(),
                simulated: true,
                node: None,
            })
            .collect()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn held(id: u64, gpus: &[&str], from_h: i64, to_h: i64) -> Booking {
        let mut b = Booking {
            id: BookingId(id),
            owner: "bob".into(),
            gpus: gpus.iter().map(|g| GpuUuid(g.to_string())).collect(),
            interval: Interval::new(
                now() + Duration::hours(from_h),
                now() + Duration::hours(to_h),
            )
            .unwrap(),
            title: String::new(),
            state: BookingState::Confirmed,
            job: None,
            asap: None,
            pending_reason: None,
            created_at: now() - Duration::hours(1),
            revision: 1,
            pending_since: None,
            warned_start: false,
            warned_end: false,
            run: None,
            usage: None,
        };
        if from_h <= 0 {
            b.state = BookingState::Active;
        }
        b
    }

    fn alice() -> Actor {
        Actor {
            user: "alice".into(),
            role: Role::User,
        }
    }

    fn ask(count: u32, hours: i64) -> AsapAsk {
        AsapAsk {
            count,
            min_memory: None,
            duration: Duration::hours(hours),
        }
    }

    #[test]
    fn a_quote_is_the_earliest_fit_and_counts_the_gpus_left_idle() {
        // a-0 and a-1 busy for 2 hours, a-2 and a-3 free: the plan picks a-2 and a-3 now,
        // leaving none idle.
        let q = quote_plan(
            gpus("a", 4, 80),
            Policy::default(),
            vec![held(1, &["a-0", "a-1"], -1, 2)],
            &alice(),
            &ask(2, 4),
            now(),
        )
        .unwrap();
        assert_eq!(q.interval.start, now());
        assert_eq!(q.gpus, [GpuUuid("a-2".into()), GpuUuid("a-3".into())]);
        assert_eq!(q.idle, 0);
        assert!(!q.needs_approval);
        // Three GPUs: the third comes free in 2 hours.
        let q = quote_plan(
            gpus("a", 4, 80),
            Policy::default(),
            vec![held(1, &["a-0", "a-1"], -1, 2)],
            &alice(),
            &ask(3, 4),
            now(),
        )
        .unwrap();
        assert_eq!(q.interval.start, now() + Duration::hours(2));
        assert_eq!(q.idle, 1);
    }

    #[test]
    fn too_few_or_too_small_gpus_is_an_error_not_a_quote() {
        let e = quote_plan(
            gpus("a", 1, 80),
            Policy::default(),
            vec![],
            &alice(),
            &ask(2, 1),
            now(),
        );
        assert!(e.is_err());
        let mut a = ask(1, 1);
        a.min_memory = Some(100);
        assert!(quote_plan(
            gpus("a", 2, 80),
            Policy::default(),
            vec![],
            &alice(),
            &a,
            now()
        )
        .is_err());
    }

    #[test]
    fn choose_soonest_then_fewest_idle_then_confirmed_first() {
        let q = |h: i64, idle: usize, approval: bool| -> Result<Quote, ()> {
            Ok(Quote {
                interval: Interval::new(now() + Duration::hours(h), now() + Duration::hours(h + 1))
                    .unwrap(),
                gpus: vec![],
                idle,
                needs_approval: approval,
            })
        };
        assert_eq!(choose(&[q(2, 0, false), q(1, 5, false)]), Some(1));
        assert_eq!(
            choose(&[q(1, 3, false), q(1, 1, false), q(1, 1, false)]),
            Some(1)
        );
        assert_eq!(choose(&[Err(()), q(3, 0, false)]), Some(1));
        assert_eq!(choose(&[q(0, 0, true), q(3, 0, false)]), Some(1));
        assert_eq!(choose(&[q(0, 0, true), Err(())]), Some(0));
        assert_eq!(choose::<()>(&[Err(()), Err(())]), None);
    }
}
