//! Reads the GPUs on a fixed interval and publishes the latest reading. Readings are pushed to
//! subscribers live; they are not events and are not stored. Each reading goes through the
//! [`Watch`] (history, usage, intruders, idleness) and into the bookings' series ([`Series`])
//! before it is published.

use crate::gpu::GpuReader;
use crate::series::Series;
use crate::watch::Watch;
use gpubook_proto::Readings;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Reads `reader` every `interval`, hands each reading to `watcher` and `series`, takes a GPU it reports
/// faulty out of service in `state` (see `maintenance`), then publishes it in `out`, until
/// `shutdown` resolves. A failed reading is logged once per run of failures and
/// the last good reading is withdrawn.
pub async fn run(
    reader: Arc<Mutex<Box<dyn GpuReader>>>,
    interval: Duration,
    out: watch::Sender<Option<Readings>>,
    (watcher, series): (Arc<Watch>, Arc<Series>),
    state: Arc<crate::state::State>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut shutdown => break,
        }
        let (r, w, st, se) = (
            reader.clone(),
            watcher.clone(),
            state.clone(),
            series.clone(),
        );
        let reading = tokio::task::spawn_blocking(move || {
            let reading = r.lock().unwrap_or_else(|p| p.into_inner()).read();
            if let Ok(readings) = &reading {
                w.observe(readings);
                crate::maintenance::take_out_faulty(&st, readings);
                se.observe(&st, readings);
            }
            reading
        })
        .await;
        match reading {
            Ok(Ok(readings)) => {
                failing = false;
                out.send_replace(Some(readings));
            }
            Ok(Err(e)) => {
                if !failing {
                    eprintln!("gpubook-agent: reading the GPUs failed: {e}");
                }
                failing = true;
                out.send_replace(None);
            }
            Err(e) => eprintln!("gpubook-agent: GPU reader task failed: {e}"),
        }
    }
    // The open buckets of the bookings' series, so a restart continues them.
    let _ = tokio::task::spawn_blocking(move || series.flush()).await;
}
