//! The requests the app sends to a server's agent over the server's live connection:
//! bookings, decisions, GPUs, the policy, job logs, "as soon as possible" on any server.

use chrono::{DateTime, Utc};
use gpubook_core::{Booking, BookingId, Maintenance};
use gpubook_proto::{
    ApproveRequest, BookRequest, BookingResponse, CancelRequest, DenyRequest, ExtendRequest,
    GpuChoice, GpusRequest, GpusResponse, ListRequest, LogsRequest, LogsResponse,
    MaintenanceRequest, MaintenanceResponse, MoveRequest, PolicyRequest, PolicyResponse,
    ReleaseRequest, Request, Response, WhenChoice,
};

use super::Manager;
use crate::error::AppError;
use crate::ipc::AsapAnyResponse;
use gpubook_client::servers::asap::{self, AsapAsk};

impl Manager {
    async fn booking(&self, id: &str, req: Request) -> Result<BookingResponse, AppError> {
        match self.request(id, req).await? {
            Response::Booking(b) => Ok(b),
            other => Err(unexpected(id, "a booking", &other)),
        }
    }

    /// The GPUs of server `id`.
    pub async fn gpus(&self, id: &str) -> Result<GpusResponse, AppError> {
        match self.request(id, Request::Gpus(GpusRequest {})).await? {
            Response::Gpus(g) => Ok(g),
            other => Err(unexpected(id, "the GPUs", &other)),
        }
    }

    /// The maintenance periods of server `id`, ended ones included; none from an agent older
    /// than protocol 1.4, which has none.
    pub async fn maintenance(&self, id: &str) -> Result<Vec<Maintenance>, AppError> {
        let (conn, _) = self.connection(id)?;
        if conn.welcome().minor < 4 {
            return Ok(Vec::new());
        }
        let req = Request::Maintenance(MaintenanceRequest::List { include_past: true });
        match self.request(id, req).await? {
            Response::Maintenance(m) => Ok(m.maintenance),
            other => Err(unexpected(id, "the maintenance periods", &other)),
        }
    }

    /// Takes `gpus` (all when `None`) of server `id` out of service over `start..end`.
    pub async fn create_maintenance(
        &self,
        id: &str,
        gpus: Option<Vec<String>>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        reason: String,
    ) -> Result<MaintenanceResponse, AppError> {
        let req = Request::Maintenance(MaintenanceRequest::Create {
            gpus,
            start,
            end,
            reason,
        });
        match self.request(id, req).await? {
            Response::Maintenance(m) => Ok(m),
            other => Err(unexpected(id, "the maintenance", &other)),
        }
    }

    /// The bookings of server `id` that overlap `from..to` (all pages).
    pub async fn bookings(
        &self,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Booking>, AppError> {
        let range = gpubook_core::Interval::new(from, to).ok_or_else(|| {
            AppError::internal("The calendar asked for a range that ends before it starts.")
        })?;
        let (conn, name) = self.connection(id)?;
        let all = conn
            .list_all(ListRequest {
                range: Some(range),
                mine: false,
                include_past: true,
                after: None,
            })
            .await
            .map_err(|e| AppError::from_client(e, id, &name))?;
        Ok(all.bookings)
    }

    /// The policy of server `id`.
    pub async fn policy(&self, id: &str) -> Result<PolicyResponse, AppError> {
        match self.request(id, Request::Policy(PolicyRequest {})).await? {
            Response::Policy(p) => Ok(p),
            other => Err(unexpected(id, "the policy", &other)),
        }
    }

    /// Books on server `id`.
    pub async fn book(&self, id: &str, req: BookRequest) -> Result<BookingResponse, AppError> {
        self.booking(id, Request::Book(req)).await
    }

    /// Books "as soon as possible" on whichever connected server would start it soonest:
    /// each is quoted from its own plan (gpubook_client::servers::asap), then the request
    /// goes to the chosen one, whose agent decides. `req` must ask for a count of GPUs
    /// "as soon as possible".
    pub async fn asap_any(&self, req: BookRequest) -> Result<AsapAnyResponse, AppError> {
        let (count, min_memory) = match &req.gpus {
            GpuChoice::Count { count, min_memory } => (*count, *min_memory),
            GpuChoice::Named { .. } | GpuChoice::OnNode { .. } => {
                return Err(AppError::internal(
                    "\"As soon as possible\" on any server needs a number of GPUs, not named ones.",
                )
                .with_kind_invalid())
            }
        };
        let duration_secs = match &req.when {
            WhenChoice::Asap { duration_secs } => *duration_secs,
            WhenChoice::At { .. } => {
                return Err(AppError::internal(
                    "\"As soon as possible\" on any server needs a duration, not a time.",
                )
                .with_kind_invalid())
            }
        };
        let ask = AsapAsk {
            count,
            min_memory,
            duration: chrono::Duration::seconds(duration_secs),
        };
        let conns = self.connections();
        if conns.is_empty() {
            return Err(AppError::app(
                crate::error::AppOnlyKind::Unreachable,
                "No server is connected right now, so none can be asked.",
                None,
            ));
        }
        let now = Utc::now();
        let mut quotes = Vec::new();
        for (_, _, c) in &conns {
            quotes.push(asap::quote(c, &ask, now).await);
        }
        let Some(i) = asap::choose(&quotes) else {
            let why: Vec<String> = conns
                .iter()
                .zip(&quotes)
                .filter_map(|((_, name, _), q)| q.as_ref().err().map(|e| format!("{name}: {e}")))
                .collect();
            return Err(AppError::internal(format!(
                "No server can take {count} GPU{} for {}: {}.",
                if count == 1 { "" } else { "s" },
                crate::notify::human_duration(ask.duration),
                why.join("; ")
            ))
            .with_kind_invalid());
        };
        let server = conns[i].0.clone();
        let response = self.book(&server, req).await?;
        Ok(AsapAnyResponse { server, response })
    }

    /// Cancels booking `b` on server `id`.
    pub async fn cancel(&self, id: &str, b: u64) -> Result<BookingResponse, AppError> {
        self.booking(id, Request::Cancel(CancelRequest { id: BookingId(b) }))
            .await
    }

    /// Extends booking `b` to `end`.
    pub async fn extend(
        &self,
        id: &str,
        b: u64,
        end: DateTime<Utc>,
    ) -> Result<BookingResponse, AppError> {
        self.booking(
            id,
            Request::Extend(ExtendRequest {
                id: BookingId(b),
                end,
            }),
        )
        .await
    }

    /// Moves booking `b` to `start..end`.
    pub async fn move_booking(
        &self,
        id: &str,
        b: u64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<BookingResponse, AppError> {
        self.booking(
            id,
            Request::Move(MoveRequest {
                id: BookingId(b),
                start,
                end,
                gpus: None,
            }),
        )
        .await
    }

    /// Releases the rest of booking `b`'s slot.
    pub async fn release(&self, id: &str, b: u64) -> Result<BookingResponse, AppError> {
        self.booking(id, Request::Release(ReleaseRequest { id: BookingId(b) }))
            .await
    }

    /// Approves booking `b` (admins) as it was at revision `rev`, the one the admin saw.
    pub async fn approve(
        &self,
        id: &str,
        b: u64,
        rev: Option<u32>,
    ) -> Result<BookingResponse, AppError> {
        self.booking(
            id,
            Request::Approve(ApproveRequest {
                id: BookingId(b),
                rev,
            }),
        )
        .await
    }

    /// Denies booking `b` (admins) as it was at revision `rev`.
    pub async fn deny(
        &self,
        id: &str,
        b: u64,
        reason: Option<String>,
        rev: Option<u32>,
    ) -> Result<BookingResponse, AppError> {
        self.booking(
            id,
            Request::Deny(DenyRequest {
                id: BookingId(b),
                reason,
                rev,
            }),
        )
        .await
    }

    /// The log of booking `b`'s job from byte `offset` on (0: from the start), as far as it
    /// goes now (at most about 1 MiB at a time); `next` is where the following call goes on.
    /// `follow`: `Some(true)` has the agent push the rest as it is written (to [`Sink::log`],
    /// from the answer's `next` on; where the server's view says `follows_logs`),
    /// `Some(false)` stops that, `None` leaves it as it is.
    pub async fn job_logs(
        &self,
        id: &str,
        b: u64,
        offset: u64,
        follow: Option<bool>,
    ) -> Result<LogsResponse, AppError> {
        let mut all = LogsResponse {
            data: String::new(),
            next: offset,
            done: false,
        };
        loop {
            let page = self.log_page(id, b, all.next, None).await?;
            let empty = page.data.is_empty();
            all.data.push_str(&page.data);
            all.next = page.next;
            all.done = page.done;
            if empty || page.done || all.data.len() > 1 << 20 {
                break;
            }
        }
        if follow.is_some() {
            // Followed from where this answer ends, with whatever came in meanwhile.
            let last = self.log_page(id, b, all.next, follow).await?;
            all.data.push_str(&last.data);
            all.next = last.next;
            all.done = last.done;
        }
        Ok(all)
    }

    /// One piece of booking `b`'s job log from `offset` (see [`Manager::job_logs`]).
    async fn log_page(
        &self,
        id: &str,
        b: u64,
        offset: u64,
        follow: Option<bool>,
    ) -> Result<LogsResponse, AppError> {
        let req = Request::Logs(LogsRequest {
            id: BookingId(b),
            offset,
            follow,
        });
        match self.request(id, req).await? {
            Response::Logs(l) => Ok(l),
            other => Err(unexpected(id, "the job's log", &other)),
        }
    }
}

fn unexpected(id: &str, what: &str, got: &Response) -> AppError {
    AppError::internal(format!(
        "Server {id} answered something else than {what} ({got:?}); are the app and the agent compatible?"
    ))
}
