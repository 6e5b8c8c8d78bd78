//! `gpubook usage N --series`: a booking's GPU utilisation and memory over its slot, as the
//! agent kept them (owner and admins only; see `gpubook_proto::series`). In words, one line of
//! bars per GPU and figure; with `--json`, the agent's answer.

use crate::print::print_json;
use crate::Failure;
use anyhow::anyhow;
use gpubook_core::series::SeriesPoint;
use gpubook_core::BookingId;
use gpubook_proto::{ErrorKind, Request, Response, UsageSeriesRequest, UsageSeriesResponse};

/// Most bars drawn per line: longer series are averaged into this many.
const WIDTH: usize = 60;
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Booking `id`'s series from the agent behind `conn`.
pub async fn fetch(
    conn: &gpubook_client::Connection,
    id: BookingId,
) -> Result<UsageSeriesResponse, Failure> {
    let answer = conn
        .request(Request::UsageSeries(UsageSeriesRequest { id }))
        .await
        .map_err(anyhow::Error::from);
    match answer {
        Ok(Response::UsageSeries(s)) => Ok(s),
        Ok(other) => Err(anyhow!("unexpected answer {other:?}").into()),
        Err(e) => {
            let f = Failure::from(e);
            if f.kind == Some(ErrorKind::UnknownRequest) {
                let w = conn.welcome();
                return Err(Failure {
                    code: crate::exit_code(ErrorKind::Incompatible),
                    error: anyhow!(
                        "the agent on {} (gpubook-agent {}) keeps no GPU series per booking; \
                         upgrade gpubook-agent there",
                        w.server,
                        w.agent_version
                    ),
                    kind: Some(ErrorKind::Incompatible),
                });
            }
            Err(f)
        }
    }
}

/// `gpubook usage N --series`.
pub async fn show(
    conn: &gpubook_client::Connection,
    id: BookingId,
    json: bool,
) -> Result<(), Failure> {
    let s = fetch(conn, id).await?;
    if json {
        print_json(&s);
    } else {
        print!("{}", text(&s));
    }
    Ok(())
}

/// The series in words: a header, then per GPU its utilisation and memory as bars.
pub fn text(s: &UsageSeriesResponse) -> String {
    let mut out = format!(
        "Booking {} on {}, {} to {}",
        s.id,
        s.server,
        crate::output::when(s.start),
        crate::output::when(s.end)
    );
    if s.bucket_secs > 0 {
        out += &format!(
            ", a point per {}",
            gpubook_core::duration::format_duration(chrono::Duration::seconds(s.bucket_secs))
        );
    }
    out.push('\n');
    for g in &s.gpus {
        let name = g
            .index
            .map_or_else(|| g.uuid.0.clone(), |i| format!("GPU {i}"));
        if g.points.is_empty() {
            out += &format!("{name}  no readings kept (yet)\n");
            continue;
        }
        let util: Vec<f64> = g.points.iter().map(|p| p.util_mean).collect();
        let (mean, peak) = util_figures(&g.points);
        out += &format!(
            "{name}  util    {}  mean {mean:.0} %, peak {peak} %\n",
            bars(&util, 100.0)
        );
        let mem: Vec<f64> = g.points.iter().map(|p| p.memory_mean as f64).collect();
        let top = g.points.iter().map(|p| p.memory_max).max().unwrap_or(0);
        let scale = if g.memory_total > 0 {
            g.memory_total
        } else {
            top.max(1)
        };
        let of = if g.memory_total > 0 {
            format!(" of {}", gib(g.memory_total))
        } else {
            String::new()
        };
        out += &format!(
            "{}  memory  {}  peak {}{of}\n",
            " ".repeat(name.chars().count()),
            bars(&mem, scale as f64),
            gib(top)
        );
    }
    out
}

/// Bytes as GiB with one decimal, as `gpus` and `usage` show memory.
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Mean utilisation over every reading, and the peak.
fn util_figures(points: &[SeriesPoint]) -> (f64, u32) {
    let n: u64 = points.iter().map(|p| p.readings).sum();
    let sum: f64 = points.iter().map(|p| p.util_mean * p.readings as f64).sum();
    let peak = points.iter().map(|p| p.util_max).max().unwrap_or(0);
    (if n > 0 { sum / n as f64 } else { 0.0 }, peak)
}

/// `values` (0 to `top`) as at most [`WIDTH`] bars.
fn bars(values: &[f64], top: f64) -> String {
    let per = values.len().div_ceil(WIDTH).max(1);
    values
        .chunks(per)
        .map(|c| {
            let v = c.iter().sum::<f64>() / c.len() as f64;
            let i = (v / top.max(f64::MIN_POSITIVE) * (BARS.len() - 1) as f64).round();
            BARS[(i.max(0.0) as usize).min(BARS.len() - 1)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_top_and_fit_the_width() {
        assert_eq!(bars(&[0.0, 50.0, 100.0], 100.0), "▁▅█");
        assert!(bars(&[100.0; 500], 100.0).chars().count() <= WIDTH);
        assert_eq!(bars(&[], 100.0), "");
    }
}
