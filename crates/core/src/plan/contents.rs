//! What a booking may carry: a title and a job within their bounds, nothing the agent alone
//! decides (the GPUs a job sees, how long it outlives its slot), and small enough in all to
//! fit a listing page.

use super::*;

/// Bounds on a job's parts, and what the agent alone decides: the GPUs a job sees
/// (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER and the GPUBOOK_ variables) and how long it may
/// outlive its slot (`max_grace`, for everyone: the grace runs on the next booking's GPUs).
pub(super) fn check_job(j: &JobSpec, policy: &Policy) -> Result<(), PlanError> {
    const COMMAND: usize = 16 * 1024;
    const PATH: usize = 4096;
    const VARS: usize = 128;
    const VALUE: usize = 4096;
    let invalid = |m: String| Err(PlanError::Invalid(m));
    if j.command.trim().is_empty() {
        return invalid("the job's command is empty".into());
    }
    if j.command.len() > COMMAND {
        return invalid(format!("the job's command is longer than {COMMAND} bytes"));
    }
    if j.command.contains('\0') {
        return invalid("the job's command contains a NUL character".into());
    }
    if let Some(cwd) = &j.cwd {
        if !cwd.starts_with('/') {
            return invalid(format!(
                "the working directory must be an absolute path on the server; the client \
                 resolves a relative one ({cwd:?} is not absolute)"
            ));
        }
        if cwd.contains('\0') {
            return invalid("the job's working directory contains a NUL character".into());
        }
        if cwd.len() > PATH {
            return invalid(format!(
                "the job's working directory is longer than {PATH} bytes"
            ));
        }
    }
    if let Some(sig) = &j.end_signal {
        if crate::booking::canonical_signal(sig).is_none() {
            return invalid(format!(
                "{sig:?} is not a signal a job can be sent at its end; use one of {}",
                crate::booking::JOB_SIGNALS.join(", ")
            ));
        }
    }
    let max_grace = policy.max_grace();
    if let Some(g) = j
        .grace_secs
        .filter(|g| i64::from(*g) > max_grace.num_seconds())
    {
        return invalid(format!(
            "the job's grace period of {g} s is over the policy's max_grace of {}: a job in \
             its grace period still runs on the GPUs of the next booking",
            crate::duration::format_duration(max_grace)
        ));
    }
    if j.env.len() > VARS {
        return invalid(format!(
            "the job sets more than {VARS} environment variables"
        ));
    }
    for (k, v) in &j.env {
        if k.is_empty() {
            return invalid("the job sets an environment variable with an empty name".into());
        }
        if k.contains('=') || k.contains('\0') {
            return invalid(format!(
                "the job's environment variable {k:?} has '=' or a NUL character in its name"
            ));
        }
        if v.contains('\0') {
            return invalid(format!(
                "the job's environment variable {k:?} has a NUL character in its value"
            ));
        }
        if crate::booking::set_by_agent(k) {
            return invalid(format!(
                "the job may not set {k}: the agent sets it (CUDA_VISIBLE_DEVICES and \
                 CUDA_DEVICE_ORDER name the booked GPUs; GPUBOOK_ variables describe the booking)"
            ));
        }
        if k.len() + v.len() > VALUE {
            return invalid(format!(
                "the job's environment variable {k:?} is over {VALUE} bytes"
            ));
        }
    }
    crate::transfer::check_transfers(&j.stage, &j.save, j.save_to.as_deref(), &j.s3)
        .map_err(|e| PlanError::Invalid(e.to_string()))
}

/// Refuses a title and job that would take more than [`MAX_BOOKING_BYTES`] in JSON, so that
/// the booking always fits a listing page. The count is an upper bound on what serde_json
/// writes: every string as escaped, and a fixed allowance for names, punctuation and the
/// other fields.
pub(super) fn check_size(title: &str, job: Option<&JobSpec>) -> Result<(), PlanError> {
    /// Field names, braces, commas, `null`s, numbers and booleans of a job and a title.
    const FIXED: usize = 200;
    let mut total = FIXED + json_len(title);
    let mut env = 0;
    if let Some(j) = job {
        total += json_len(&j.command);
        total += j.cwd.as_deref().map_or(0, json_len);
        total += j.end_signal.as_deref().map_or(0, json_len);
        // Each entry: `"key":"value",`.
        env = j
            .env
            .iter()
            .map(|(k, v)| json_len(k) + json_len(v) + 2)
            .sum();
        total += env;
        // Each entry: `"name":"source",` / `"glob",`.
        total += j
            .stage
            .iter()
            .map(|(k, v)| json_len(k) + json_len(v) + 2)
            .sum::<usize>();
        total += j.save.iter().map(|g| json_len(g) + 1).sum::<usize>();
        total += j.save_to.as_deref().map_or(0, json_len);
        total += j.s3.profile.as_deref().map_or(0, json_len);
        total += j.s3.env_file.as_deref().map_or(0, json_len);
    }
    if total > MAX_BOOKING_BYTES {
        return Err(PlanError::Invalid(format!(
            "the booking's title and job take {total} bytes (the command {} bytes, the \
             environment {env} bytes); at most {MAX_BOOKING_BYTES} fit",
            job.map_or(0, |j| j.command.len())
        )));
    }
    Ok(())
}

/// Bytes `s` takes as a JSON string, quotes included, escaped as serde_json escapes it.
fn json_len(s: &str) -> usize {
    2 + s
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum::<usize>()
}

pub(super) fn check_title(title: &str) -> Result<(), PlanError> {
    if title.chars().count() > MAX_TITLE {
        return Err(PlanError::Invalid(format!(
            "the title is longer than {MAX_TITLE} characters"
        )));
    }
    if title.chars().any(|c| c.is_control()) {
        return Err(PlanError::Invalid(
            "the title contains control characters".into(),
        ));
    }
    Ok(())
}
