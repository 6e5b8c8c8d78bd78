//! `gpubook watch`: events as they happen, over a live session (gpubook_client::live) that
//! comes back by itself when the connection drops (the server said "unreachable" and "back"
//! on stderr, a refused login as such), and that shows every event once.

use crate::targets::Server;
use crate::{gpus, output, Failure};
use gpubook_client::live::{LiveEvent, LiveOptions, LiveSession, LiveStatus, StartAt};
use gpubook_client::{ClientError, Pushed};
use serde_json::json;

/// Prints events from `target` (after `after` first), and readings if asked, until `count`
/// events were printed or Ctrl-C.
pub async fn watch(
    target: &Server,
    after: Option<u64>,
    readings: bool,
    count: Option<u64>,
    json: bool,
) -> Result<(), Failure> {
    // The first connection is made here, so that its failure has its exit status.
    let conn = target.connect().await?;
    let known = gpus(&conn).await?;
    let server = conn.welcome().server.clone();
    let (link, mut rx) = LiveSession::start_with(
        conn,
        target.dialer(),
        LiveOptions {
            start: after.map_or(StartAt::Now, StartAt::After),
            readings,
        },
    );
    let mut status = link.status();
    let name = target.name.clone();
    let mut announced = false;
    // The last reason printed: a long outage says it once, not at every try.
    let mut last_reason: Option<String> = None;
    let mut seen = 0u64;
    loop {
        tokio::select! {
            p = rx.recv() => {
                let Some(p) = p else {
                    return Err(anyhow::Error::from(ClientError::ConnectionLost)
                        .context("the event stream ended")
                        .into());
                };
                let LiveEvent::Pushed(p) = p else { continue };
                match p {
                    Pushed::Event(e) => {
                        if json {
                            println!("{}", serde_json::to_string(&e).unwrap_or_default());
                        } else {
                            println!("{}", output::event_line(&e, &known));
                        }
                        seen += 1;
                        if count.is_some_and(|c| seen >= c) {
                            return Ok(());
                        }
                    }
                    Pushed::Readings(r) => print_readings(&r, json),
                    // Not asked for by watch.
                    Pushed::Log(_) => {}
                    Pushed::Error(e) => {
                        return Err(anyhow::Error::from(ClientError::Agent(e)).into())
                    }
                }
            }
            changed = status.changed() => {
                if changed.is_err() {
                    continue;
                }
                let s = status.borrow_and_update().clone();
                let refused = matches!(s, LiveStatus::LoginRefused { .. });
                match s {
                    LiveStatus::Connected { back: false, .. } if !announced => {
                        announced = true;
                        if !json {
                            eprintln!(
                                "Watching {server} (latest event {}); Ctrl-C to stop.",
                                link.last_event().unwrap_or(0)
                            );
                        }
                    }
                    LiveStatus::Connected { back: true, server } => {
                        last_reason = None;
                        if json {
                            eprintln!("{}", json!({ "status": "back", "server": name }));
                        } else {
                            eprintln!("gpubook: {name} ({server}) is back; events resume where they stopped");
                        }
                    }
                    // Down: said at once (a watch shows what happens), once per reason.
                    LiveStatus::Reconnecting { reason, retry_in }
                    | LiveStatus::Unreachable { reason, retry_in }
                    | LiveStatus::LoginRefused { reason, retry_in } => {
                        if last_reason.as_ref() == Some(&reason) {
                            continue;
                        }
                        last_reason = Some(reason.clone());
                        let (status, said) = if refused {
                            ("login_refused", "refused the login")
                        } else {
                            ("unreachable", "unreachable")
                        };
                        if json {
                            eprintln!(
                                "{}",
                                json!({ "status": status, "server": name, "reason": reason })
                            );
                        } else {
                            eprintln!(
                                "gpubook: {name} {said}: {reason}; trying again in {:.0} s",
                                retry_in.as_secs_f64().ceil()
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn print_readings(r: &gpubook_proto::Readings, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    for g in &r.gpus {
        println!(
            "        GPU {} {}% {:.1} GiB {}°C {} W",
            g.index,
            g.util_gpu,
            g.memory_used as f64 / (1u64 << 30) as f64,
            g.temperature_c,
            g.power_mw / 1000
        );
    }
}
