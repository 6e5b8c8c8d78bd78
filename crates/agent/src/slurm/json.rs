//! What gpubook reads from Slurm: `sinfo --json` nodes, `squeue --json` jobs (the fields it
//! uses, as documented for openapi v0.0.38 and later), the GRES strings inside them, and
//! `scontrol show reservation --oneliner` lines.

use serde::Deserialize;
use std::collections::BTreeMap;

/// `sinfo --json`.
#[derive(Debug, Deserialize)]
pub struct NodesReply {
    /// Every node.
    #[serde(default)]
    pub nodes: Vec<Node>,
}

/// One node of `sinfo --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Its GRES, e.g. "gpu:h200:4(S:0)".
    #[serde(default)]
    pub gres: String,
    /// What of it is allocated now, e.g. "gpu:h200:2(IDX:0-1)".
    #[serde(default)]
    pub gres_used: String,
    /// "idle", "mixed", "allocated", "down", …
    #[serde(default)]
    pub state: String,
    /// Its partitions.
    #[serde(default)]
    pub partitions: Vec<String>,
}

/// `squeue --json`.
#[derive(Debug, Deserialize)]
pub struct JobsReply {
    /// Every job Slurm still keeps.
    #[serde(default)]
    pub jobs: Vec<Job>,
}

/// One job of `squeue --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Job {
    /// Its number.
    pub job_id: u64,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Whose.
    #[serde(default)]
    pub user_name: String,
    /// "PENDING", "RUNNING", "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", … (a list of
    /// them from 23.02 on: the first is taken).
    #[serde(default, deserialize_with = "one_state")]
    pub job_state: String,
    /// How it ended: a wait status up to 22.05 (768: exit 3), an object with `return_code`
    /// and `signal` from 23.02 on.
    #[serde(default)]
    pub exit_code: serde_json::Value,
    /// The reservation it runs in, if any.
    /// The job's comment: gpubook's mark of which booking submitted it.
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub resv_name: String,
    /// Its nodes, e.g. "gpunode1".
    #[serde(default)]
    pub nodes: String,
    /// Its GRES per node, e.g. "gres:gpu:2".
    #[serde(default)]
    pub tres_per_node: String,
    /// When it was submitted (Unix seconds).
    #[serde(default, deserialize_with = "number")]
    pub submit_time: i64,
    /// When it started or is expected to (Unix seconds; 0 when unknown).
    #[serde(default, deserialize_with = "number")]
    pub start_time: i64,
    /// When it ended or will end at the latest (Unix seconds).
    #[serde(default, deserialize_with = "number")]
    pub end_time: i64,
    /// The GRES it was given, per node, with their indexes ("gpu:h200:2(IDX:0-1)").
    #[serde(default)]
    pub gres_detail: Vec<String>,
}

impl Job {
    /// The indexes of the GPUs it was given on its node (from `gres_detail`), in order.
    pub fn gpu_indexes(&self) -> Vec<u32> {
        let mut idx: Vec<u32> = self
            .gres_detail
            .iter()
            .flat_map(|d| gpu_gres(d))
            .flat_map(|g| g.used)
            .collect();
        idx.sort_unstable();
        idx.dedup();
        idx
    }

    /// Its exit as a wait status, whichever way this Slurm writes it.
    pub fn exit_code_raw(&self) -> Option<i64> {
        match &self.exit_code {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::Object(o) => {
                let code = o.get("return_code").and_then(set_number)?;
                let signal = o
                    .get("signal")
                    .and_then(|s| s.get("id"))
                    .and_then(set_number)
                    .unwrap_or(0);
                Some((code & 0xff) << 8 | (signal & 0x7f))
            }
            _ => None,
        }
    }
}

/// A number, plain (up to 22.05) or as `{"set": true, "number": n}` (23.02 on).
fn set_number(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::Object(o) if o.get("set") != Some(&serde_json::Value::Bool(false)) => {
            o.get("number").and_then(|n| n.as_i64())
        }
        _ => None,
    }
}

fn number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(set_number(&v).unwrap_or(0))
}

fn one_state<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Array(a) => a
            .first()
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    })
}

/// One GRES entry of a node: `gpu[:type]:count[(…)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gres {
    /// The GPU type ("h200"), when the node names one.
    pub kind: Option<String>,
    /// How many.
    pub count: u32,
    /// The indexes in use (from `gres_used`'s `IDX:`), empty when none.
    pub used: Vec<u32>,
}

/// The `gpu` entries of a GRES string; other resources are left out.
pub fn gpu_gres(text: &str) -> Vec<Gres> {
    split_top(text)
        .into_iter()
        .filter_map(|entry| {
            let (spec, extra) = match entry.split_once('(') {
                Some((s, rest)) => (s, rest.trim_end_matches(')')),
                None => (entry, ""),
            };
            let mut parts = spec.split(':');
            if parts.next()? != "gpu" {
                return None;
            }
            let rest: Vec<&str> = parts.collect();
            let (kind, count) = match rest.as_slice() {
                [count] => (None, count.parse().ok()?),
                [kind, count] => (Some(kind.to_string()), count.parse().ok()?),
                _ => return None,
            };
            // "IDX:0,2-3" is the last field of the parentheses, commas and all.
            let used = extra
                .find("IDX:")
                .map(|at| parse_index_list(&extra[at + 4..]))
                .unwrap_or_default();
            Some(Gres { kind, count, used })
        })
        .collect()
}

/// Splits at commas outside parentheses: "gpu:a:2(IDX:0,1),gpu:b:1" → two entries.
fn split_top(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut from) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(text[from..i].trim());
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(text[from..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// "0-1,3" → [0, 1, 3]; "N/A" → [].
fn parse_index_list(text: &str) -> Vec<u32> {
    text.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) if a <= b && b - a < 1024 => (a..=b).collect(),
                _ => Vec::new(),
            },
            None => part.parse().map(|i| vec![i]).unwrap_or_default(),
        })
        .collect()
}

/// One line of `scontrol show reservation --oneliner`, as its `Key=Value` pairs.
pub fn reservation_fields(line: &str) -> BTreeMap<String, String> {
    // Values hold no spaces, except that an empty Watts or BurstBuffer may print as "n/a";
    // a word without '=' belongs to the value before it.
    let mut fields = BTreeMap::new();
    let mut last: Option<String> = None;
    for word in line.split_whitespace() {
        match word.split_once('=') {
            Some((k, v)) => {
                fields.insert(k.to_string(), v.to_string());
                last = Some(k.to_string());
            }
            None => {
                if let Some(v) = last.as_ref().and_then(|k| fields.get_mut(k)) {
                    v.push(' ');
                    v.push_str(word);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gres_as_sinfo_prints_it() {
        assert_eq!(
            gpu_gres("gpu:h200:4(S:0)"),
            vec![Gres {
                kind: Some("h200".into()),
                count: 4,
                used: vec![]
            }]
        );
        assert_eq!(gpu_gres("gpu:h200:2(IDX:0,2-3)")[0].used, vec![0, 2, 3]);
        assert_eq!(gpu_gres("gpu:h200:0(IDX:N/A)")[0].used, Vec::<u32>::new());
        let two = gpu_gres("gpu:a100:2(S:0),shard:8,gpu:h100:1(S:1)");
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].kind.as_deref(), Some("h100"));
        assert_eq!(gpu_gres("gpu:8")[0].count, 8);
        assert!(gpu_gres("").is_empty());
        assert!(gpu_gres("(null)").is_empty());
    }

    #[test]
    fn jobs_as_22_05_and_23_02_write_them() {
        let old: JobsReply = serde_json::from_str(
            r#"{"jobs":[{"job_id":7,"name":"gpubook-3","user_name":"alice","job_state":"FAILED",
            "exit_code":768,"start_time":1700000000,"end_time":1700000060,
            "gres_detail":["gpu:h200:2(IDX:1,3)"]}]}"#,
        )
        .unwrap();
        assert_eq!(old.jobs[0].exit_code_raw(), Some(768));
        assert_eq!(old.jobs[0].job_state, "FAILED");
        assert_eq!(old.jobs[0].gpu_indexes(), [1, 3]);
        let new: JobsReply = serde_json::from_str(
            r#"{"jobs":[{"job_id":8,"job_state":["COMPLETED"],
            "exit_code":{"status":["SUCCESS"],"return_code":{"set":true,"number":3},
            "signal":{"id":{"set":false,"number":0}}},
            "start_time":{"set":true,"infinite":false,"number":1700000000},
            "end_time":{"set":true,"infinite":false,"number":1700000060}}]}"#,
        )
        .unwrap();
        assert_eq!(new.jobs[0].exit_code_raw(), Some(768));
        assert_eq!(new.jobs[0].job_state, "COMPLETED");
        assert_eq!(new.jobs[0].end_time, 1_700_000_060);
        assert!(new.jobs[0].gpu_indexes().is_empty());
    }

    #[test]
    fn a_reservation_line() {
        let f = reservation_fields(
            "ReservationName=gpubook-7 StartTime=2026-12-04T10:00:00 EndTime=2026-12-04T12:00:00 \
             Duration=02:00:00 Nodes=gpunode1 NodeCnt=1 CoreCnt=8 Features=(null) \
             PartitionName=(null) Flags=OVERLAP,SPEC_NODES TRES=cpu=8 Users=alice Groups=(null) \
             Accounts=(null) Licenses=(null) State=INACTIVE BurstBuffer=(null) Watts=n/a \
             MaxStartDelay=(null)",
        );
        assert_eq!(f["ReservationName"], "gpubook-7");
        assert_eq!(f["Users"], "alice");
        assert_eq!(f["StartTime"], "2026-12-04T10:00:00");
        assert_eq!(f["Watts"], "n/a");
    }
}
