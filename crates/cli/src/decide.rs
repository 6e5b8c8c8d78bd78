//! `approve` and `deny` as the booking was when the admin looked at it.
//!
//! The agent takes a decision only for the revision it names (protocol 1.2): one made on an
//! older shape is refused as `changed`. With `--rev` that revision is sent as given. Without
//! it, on a terminal, the booking is fetched, shown, and the admin asked; the revision shown is
//! the one sent, so a change between the question and the answer is caught too. Without a
//! terminal nothing is asked and no revision is sent: the agent then takes the decision only if
//! the booking has not changed since it became pending.

use crate::prompt::TerminalPrompt;
use crate::{output, Failure};
use anyhow::anyhow;
use gpubook_client::ssh::Prompt;
use gpubook_client::Connection;
use gpubook_core::{BookingId, BookingState};
use gpubook_proto::Request;

/// Fills in the revision of an `approve` or `deny` given without `--rev`, after showing the
/// booking and asking, when someone is at a terminal. Any other request is left alone.
pub async fn confirm(conn: &Connection, req: &mut Request) -> Result<(), Failure> {
    let (verb, id, rev) = match req {
        Request::Approve(a) => ("Approve", a.id, &mut a.rev),
        Request::Deny(d) => ("Deny", d.id, &mut d.rev),
        _ => return Ok(()),
    };
    // An agent before 1.2 ignores the revision: it would decide on whatever the booking is
    // now. Said, rather than sent as if it were checked.
    let minor = conn.welcome().minor;
    if rev.is_some() && minor < 2 {
        return Err(Failure {
            code: 2,
            error: anyhow!(
                "the agent on {} speaks protocol 1.{minor}, which cannot check --rev: upgrade \
                 it, or decide without --rev on a terminal to see the booking first",
                conn.welcome().server
            ),
            kind: Some(gpubook_proto::ErrorKind::Incompatible),
        });
    }
    if rev.is_some() {
        return Ok(());
    }
    let Some(prompt) = TerminalPrompt::if_interactive() else {
        return Ok(());
    };
    let b = crate::jobs::booking(conn, id).await?;
    *rev = Some(b.revision);
    // One that does not wait for approval is sent as it is: the agent says why it cannot be
    // decided, which is better than a question with only one sensible answer.
    if b.state != BookingState::PendingApproval {
        return Ok(());
    }
    let known = crate::gpus(conn).await?;
    eprintln!(
        "{}",
        output::booking_shape(&b, &known, &conn.welcome().server)
    );
    if prompt.confirm(&format!("{verb} booking {id} as shown?")) {
        Ok(())
    } else {
        Err(declined(verb, id))
    }
}

/// The admin answered no: nothing was sent.
fn declined(verb: &str, id: BookingId) -> Failure {
    Failure {
        code: 1,
        error: anyhow!(
            "booking {id} was not {}: nothing was sent",
            if verb == "Approve" {
                "approved"
            } else {
                "denied"
            }
        ),
        kind: None,
    }
}
