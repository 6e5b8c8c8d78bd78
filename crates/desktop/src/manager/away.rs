//! News while away and reports: the person's own e-mail and webhook targets on a server
//! (protocol 1.4) and the server's report of GPU-hours (1.3). Each is one request to the
//! agent, which decides who sees what: targets are always the caller's own, and a report
//! covers everyone only for an admin.

use chrono::{DateTime, Utc};
use gpubook_proto::notify::check_targets;
use gpubook_proto::{
    ErrorKind, NotifyClearRequest, NotifyResponse, NotifySetRequest, NotifyShowRequest,
    NotifyTarget, ReportRequest, ReportResponse, Request, Response,
};

use super::Manager;
use crate::error::{AppError, AppErrorKind};

/// The first protocol minor whose agents keep notification targets.
const NOTIFY_MINOR: u32 = 4;
/// The first protocol minor whose agents report.
const REPORT_MINOR: u32 = 3;

impl Manager {
    /// The person's targets on server `id` and how their latest deliveries went.
    pub async fn notify_show(&self, id: &str) -> Result<NotifyResponse, AppError> {
        self.notify(id, Request::NotifyShow(NotifyShowRequest {}))
            .await
    }

    /// Replaces the person's targets on server `id`. Checked here first against the same
    /// bounds as the agent's, so a bad address is refused with `invalid` before anything is
    /// sent (the agent checks again).
    pub async fn notify_set(
        &self,
        id: &str,
        targets: Vec<NotifyTarget>,
    ) -> Result<NotifyResponse, AppError> {
        check_targets(&targets).map_err(|why| {
            AppError::internal(format!("{}: {why}.", self.name_of(id))).with_kind_invalid()
        })?;
        self.notify(id, Request::NotifySet(NotifySetRequest { targets }))
            .await
    }

    /// Removes the person's targets on server `id`.
    pub async fn notify_clear(&self, id: &str) -> Result<NotifyResponse, AppError> {
        self.notify(id, Request::NotifyClear(NotifyClearRequest {}))
            .await
    }

    async fn notify(&self, id: &str, req: Request) -> Result<NotifyResponse, AppError> {
        self.at_least(id, NOTIFY_MINOR, "keeps no e-mail or webhook targets")?;
        match self.request(id, req).await? {
            Response::Notify(n) => Ok(n),
            other => Err(AppError::internal(format!(
                "Server {id} answered something else than the notification targets ({other:?})."
            ))),
        }
    }

    /// The report of server `id` over `from..to`.
    pub async fn report(
        &self,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<ReportResponse, AppError> {
        self.at_least(id, REPORT_MINOR, "has no reports")?;
        match self
            .request(id, Request::Report(ReportRequest { from, to }))
            .await?
        {
            Response::Report(r) => Ok(r),
            other => Err(AppError::internal(format!(
                "Server {id} answered something else than a report ({other:?})."
            ))),
        }
    }

    /// Refuses with `incompatible` when server `id`'s agent speaks a protocol older than
    /// 1.`minor`, which `lacks` what is asked.
    fn at_least(&self, id: &str, minor: u32, lacks: &str) -> Result<(), AppError> {
        let (conn, name) = self.connection(id)?;
        let has = conn.welcome().minor;
        if has >= minor {
            return Ok(());
        }
        let mut e = AppError::internal(format!(
            "The agent on {name} speaks protocol 1.{has}, which {lacks} (1.{minor} on): ask its \
             admin to upgrade gpubook-agent."
        ));
        e.kind = AppErrorKind::Agent(ErrorKind::Incompatible);
        e.server = Some(id.to_string());
        Err(e)
    }

    /// Server `id`'s name, or the id where it is not in the list.
    fn name_of(&self, id: &str) -> String {
        self.server(id)
            .map(|s| s.name())
            .unwrap_or_else(|_| id.to_string())
    }
}
