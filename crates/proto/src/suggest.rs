//! Protocol 1.3: a booking's length suggested from the caller's past runs of the same command
//! on this server (see `gpubook_core::predict`).

use gpubook_core::S3Access;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Asks how long to book a command for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct SuggestRequest {
    /// The command line to be booked.
    pub command: String,
    /// With how many GPUs.
    pub gpus: u32,
    /// The bytes of data it will stage, where known.
    #[serde(default)]
    pub staged_bytes: Option<u64>,
    /// What it will stage (`JobSpec::stage`): where `staged_bytes` is absent, the agent counts
    /// these sources' size as the caller, so the suggestion scales with a dataset that grew
    /// since the last runs. Older clients send none.
    #[serde(default)]
    pub stage: BTreeMap<String, String>,
    /// Which of the caller's S3 credentials count `s3://` sources. Older clients send none.
    #[serde(default)]
    pub s3: S3Access,
}

/// A suggested length, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct SuggestionResponse {
    /// Seconds to book; absent when there is nothing to go by.
    #[serde(default)]
    pub length_secs: Option<i64>,
    /// How many past runs it rests on.
    pub runs: u32,
    /// The shortest of those runs, in seconds.
    pub shortest_secs: i64,
    /// The longest of those runs, in seconds.
    pub longest_secs: i64,
    /// Whether the lengths were scaled by the size of the staged data.
    pub scaled: bool,
    /// In words: what the suggestion rests on, or why there is none.
    pub says: String,
}
