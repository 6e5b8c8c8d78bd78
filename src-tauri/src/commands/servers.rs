//! Servers: the list, adding (with the SSH host key shown for the person to accept), removing.
//! The logic is gpubook_desktop::servers; the list is the CLI's servers.toml.

use std::path::PathBuf;

use gpubook_desktop::servers;
use gpubook_desktop::{AppError, Manager, ServerView};
use tauri::AppHandle;

use super::{manager, Answer};

/// The person's server list file.
fn list() -> Answer<PathBuf> {
    gpubook_client::servers::default_path()
        .map_err(|e| AppError::internal(format!("The server list cannot be found: {e}")))
}

/// Adds the servers of the person's list (servers.toml) to `m`, each under its name.
pub fn add_saved(m: &Manager) {
    match list() {
        Ok(path) => servers::add_saved(m, &path),
        Err(e) => eprintln!("gpubook: {}", e.message),
    }
}

/// The Hosts of the person's ~/.ssh/config (and its Includes) that "Add server" offers.
pub async fn ssh_hosts(_app: &AppHandle) -> Answer<Vec<String>> {
    Ok(gpubook_client::ssh::config_hosts(&Default::default()))
}

/// Every server with its state.
pub async fn servers(app: &AppHandle) -> Answer<Vec<ServerView>> {
    Ok(manager(app).views())
}

/// Adds a server: an alias from ~/.ssh/config, user@host[:port], or unix:PATH. An unknown
/// host key rejects with `host_key_unknown` and its fingerprint; a login that needs a
/// password or passphrase rejects with `auth`, and the UI asks again with `secret` (kept in
/// memory for this run, in the OS keyring only if `remember`).
pub async fn add_server(
    app: &AppHandle,
    spec: String,
    secret: Option<String>,
    remember: Option<bool>,
) -> Answer<ServerView> {
    servers::add(
        &manager(app),
        &list()?,
        &spec,
        secret,
        remember.unwrap_or(false),
    )
    .await
}

/// Adds a server after the person accepted its host key `fingerprint`.
pub async fn accept_host_key(
    app: &AppHandle,
    spec: String,
    fingerprint: String,
    secret: Option<String>,
    remember: Option<bool>,
) -> Answer<ServerView> {
    let remember = remember.unwrap_or(false);
    servers::accept_host_key(
        &manager(app),
        &list()?,
        &spec,
        &fingerprint,
        secret,
        remember,
    )
    .await
}

/// Removes a server from the app and the person's list.
pub async fn remove_server(app: &AppHandle, id: String) -> Answer<()> {
    servers::remove(&manager(app), &list()?, &id)
}

/// Signs in to a server of the list whose login was refused, with the password or key
/// passphrase the person typed (kept in the OS keyring only if `remember`).
pub async fn sign_in(
    app: &AppHandle,
    id: String,
    secret: Option<String>,
    remember: Option<bool>,
) -> Answer<ServerView> {
    servers::sign_in(
        &manager(app),
        &list()?,
        &id,
        secret,
        remember.unwrap_or(false),
    )
    .await
}
