//! Servers: the list, adding (with the SSH host key shown for the person to accept), removing.

use gpubook_client::servers::ServerList;
use gpubook_client::Endpoint;
use gpubook_desktop::error::AppOnlyKind;
use gpubook_desktop::manager::name_for;
use gpubook_desktop::prompt;
use gpubook_desktop::{AppError, Manager, ServerView};
use tauri::State;

use super::Answer;

fn uid() -> u32 {
    // SAFETY: getuid cannot fail and touches no memory.
    unsafe { libc::getuid() }
}

/// Adds the servers of the person's list (servers.toml) to `m`, each under its name.
pub fn add_saved(m: &Manager) {
    let list = match ServerList::load_default() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gpubook: the server list cannot be read: {e}");
            return;
        }
    };
    for entry in list.entries() {
        if entry.name == gpubook_client::servers::LOCAL {
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

/// The Hosts of the person's ~/.ssh/config (and its Includes) that "Add server" offers.
#[tauri::command]
pub fn ssh_hosts() -> Vec<String> {
    gpubook_client::ssh::config_hosts(&Default::default())
}

fn parse(spec: &str) -> Answer<Endpoint> {
    Endpoint::parse(spec.trim(), uid())
        .map_err(|e| AppError::app(AppOnlyKind::Internal, e.to_string(), None).with_kind_invalid())
}

async fn add(
    m: &Manager,
    spec: &str,
    accept: bool,
    secret: Option<String>,
    remember: bool,
) -> Answer<ServerView> {
    let spec = spec.trim();
    let ep = parse(spec)?;
    let mut list = ServerList::load_default()
        .map_err(|e| AppError::internal(format!("The server list cannot be read: {e}")))?;
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

/// Every server with its state.
#[tauri::command]
pub fn servers(m: State<'_, Manager>) -> Vec<ServerView> {
    m.views()
}

/// Adds a server: an alias from ~/.ssh/config, user@host[:port], or unix:PATH. An unknown
/// host key rejects with `host_key_unknown` and its fingerprint; a login that needs a
/// password or passphrase rejects with `auth`, and the UI asks again with `secret` (kept in
/// memory for this run, in the OS keyring only if `remember`).
#[tauri::command]
pub async fn add_server(
    m: State<'_, Manager>,
    spec: String,
    secret: Option<String>,
    remember: Option<bool>,
) -> Answer<ServerView> {
    add(&m, &spec, false, secret, remember.unwrap_or(false)).await
}

/// Adds a server after the person accepted its host key `fingerprint`.
#[tauri::command]
pub async fn accept_host_key(
    m: State<'_, Manager>,
    spec: String,
    fingerprint: String,
    secret: Option<String>,
    remember: Option<bool>,
) -> Answer<ServerView> {
    let remember = remember.unwrap_or(false);
    // The key must still be the one the person saw.
    let ssh = prompt::options_for(&spec, secret.clone(), false);
    match m.probe(spec.trim(), &parse(&spec)?, false, &ssh).await {
        Err(e) if e.fingerprint.as_deref() == Some(fingerprint.as_str()) => {
            add(&m, &spec, true, secret, remember).await
        }
        Err(e) if e.fingerprint.is_some() => Err(AppError::app(
            AppOnlyKind::HostKeyChanged,
            format!(
                "The host key of {} changed while you were looking at it; it is not accepted.",
                spec.trim()
            ),
            Some(spec.trim()),
        )),
        Err(e) => Err(e),
        Ok(()) => add(&m, &spec, false, secret, remember).await,
    }
}

/// Removes a server from the app and the person's list.
#[tauri::command]
pub fn remove_server(m: State<'_, Manager>, id: String) -> Answer<()> {
    if id == "local" {
        return Err(AppError::app(
            AppOnlyKind::Internal,
            "This computer cannot be removed.",
            Some("local"),
        )
        .with_kind_invalid());
    }
    m.remove(&id)?;
    if let Ok(mut list) = ServerList::load_default() {
        if list.remove(&id).is_ok() {
            list.save()
                .map_err(|e| AppError::internal(format!("The server list cannot be saved: {e}")))?;
        }
    }
    Ok(())
}
