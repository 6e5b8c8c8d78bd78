//! The person's servers in the app: the saved list at start, adding one (its SSH host key
//! shown for the person to accept, a password or passphrase asked for), removing one. The
//! list is the file the CLI reads too (`servers.toml`, see [`gpubook_client::servers`]).

use std::path::Path;

use gpubook_client::servers::{ServerList, LOCAL};
use gpubook_client::Endpoint;

use crate::error::{AppError, AppOnlyKind};
use crate::ipc::ServerView;
use crate::manager::{name_for, Manager};
use crate::prompt;

fn uid() -> u32 {
    crate::local::uid()
}

fn load(list: &Path) -> Result<ServerList, AppError> {
    ServerList::load(list)
        .map_err(|e| AppError::internal(format!("The server list cannot be read: {e}")))
}

fn parse(spec: &str) -> Result<Endpoint, AppError> {
    let ep = Endpoint::parse(spec.trim(), uid()).map_err(|e| {
        AppError::app(AppOnlyKind::Internal, e.to_string(), None).with_kind_invalid()
    })?;
    if matches!(ep, Endpoint::Unix(_)) && !crate::local::AVAILABLE {
        return Err(
            AppError::app(AppOnlyKind::Internal, crate::local::NOT_HERE, None).with_kind_invalid(),
        );
    }
    Ok(ep)
}

/// Adds the servers of the list at `list` to `m`, each under its name. A list that cannot be
/// read, or an entry that does not parse, is reported on stderr and skipped: the app still
/// starts with This computer.
pub fn add_saved(m: &Manager, list: &Path) {
    let list = match ServerList::load(list) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gpubook: the server list cannot be read: {e}");
            return;
        }
    };
    for entry in list.entries() {
        if entry.name == LOCAL {
            continue;
        }
        match entry.endpoint(uid()) {
            Ok(ep) => {
                m.add(&entry.name, &entry.name, ep);
            }
            Err(e) => eprintln!("gpubook: server {}: {e}", entry.name),
        }
    }
}

/// Adds the server `spec` (an alias from ~/.ssh/config, `user@host[:port]`, `ssh://...` or
/// `unix:PATH`) to `m` and to the list at `list`, after one connection checked it. An unknown
/// SSH host key fails with `host_key_unknown` and its fingerprint (the person then accepts it
/// with [`accept_host_key`]); a login that needs a password or passphrase fails with `auth`,
/// and the app asks again with `secret` (kept in memory for this run, in the OS keyring only
/// if `remember`). Nothing is saved unless the server answered.
pub async fn add(
    m: &Manager,
    list: &Path,
    spec: &str,
    secret: Option<String>,
    remember: bool,
) -> Result<ServerView, AppError> {
    add_checked(m, list, spec, false, secret, remember).await
}

async fn add_checked(
    m: &Manager,
    list_path: &Path,
    spec: &str,
    accept: bool,
    secret: Option<String>,
    remember: bool,
) -> Result<ServerView, AppError> {
    let spec = spec.trim();
    let ep = parse(spec)?;
    let mut list = load(list_path)?;
    if let Some(e) = list.entries().iter().find(|e| e.spec == spec) {
        return Err(AppError::app(
            AppOnlyKind::Internal,
            format!("{spec} is already in the list, as {}.", e.name),
            Some(&e.name),
        )
        .with_kind_invalid());
    }
    let mut taken: Vec<String> = list.entries().iter().map(|e| e.name.clone()).collect();
    taken.extend(m.views().into_iter().map(|v| v.id));
    let name = name_for(spec, &taken);
    let ssh = prompt::options_for(spec, secret, remember);
    m.probe(&name, &ep, accept, &ssh).await?;
    list.add(&name, spec)
        .and_then(|()| list.save())
        .map_err(|e| AppError::internal(format!("The server cannot be saved: {e}")))?;
    Ok(m.add_with(&name, &name, ep, ssh))
}

/// [`add`] after the person accepted the host key `fingerprint` that [`add`] showed them. The
/// key must still be that one: a different key is refused (`host_key_changed`), never
/// trusted.
pub async fn accept_host_key(
    m: &Manager,
    list: &Path,
    spec: &str,
    fingerprint: &str,
    secret: Option<String>,
    remember: bool,
) -> Result<ServerView, AppError> {
    let spec = spec.trim();
    let ssh = prompt::options_for(spec, secret.clone(), false);
    match m.probe(spec, &parse(spec)?, false, &ssh).await {
        Err(e) if e.fingerprint.as_deref() == Some(fingerprint) => {
            add_checked(m, list, spec, true, secret, remember).await
        }
        Err(e) if e.fingerprint.is_some() => Err(AppError::app(
            AppOnlyKind::HostKeyChanged,
            format!(
                "The host key of {spec} changed while you were looking at it; it is not accepted."
            ),
            Some(spec),
        )),
        Err(e) => Err(e),
        Ok(()) => add_checked(m, list, spec, false, secret, remember).await,
    }
}

/// Removes server `id` from `m` and from the list at `list` (This computer cannot be removed).
pub fn remove(m: &Manager, list: &Path, id: &str) -> Result<(), AppError> {
    if id == LOCAL {
        return Err(AppError::app(
            AppOnlyKind::Internal,
            "This computer cannot be removed.",
            Some(LOCAL),
        )
        .with_kind_invalid());
    }
    m.remove(id)?;
    let mut list = load(list)?;
    if list.remove(id).is_ok() {
        list.save()
            .map_err(|e| AppError::internal(format!("The server list cannot be saved: {e}")))?;
    }
    Ok(())
}

/// Signs in to the saved server `id` whose login was refused (its view says `needs_login`):
/// `secret` is the password or key passphrase the person typed (kept in memory for this
/// run, in the OS keyring only if `remember`). A wrong one fails with `auth` and changes
/// nothing.
pub async fn sign_in(
    m: &Manager,
    list: &Path,
    id: &str,
    secret: Option<String>,
    remember: bool,
) -> Result<ServerView, AppError> {
    let entry = load(list)?.get(id).ok_or_else(|| {
        AppError::app(
            AppOnlyKind::Internal,
            format!("{id} is not in the server list; add it again."),
            Some(id),
        )
    })?;
    let ssh = prompt::options_for(&entry.spec, secret, remember);
    m.sign_in(id, ssh).await
}
