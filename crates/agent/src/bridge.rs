//! `gpubook-agent bridge`: joins standard input and output to the agent's socket, so a client
//! can reach the agent over an SSH exec channel. The agent sees the bridge's uid, which is the
//! uid of the person who logged in.

use std::path::Path;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// Copies stdin → socket and socket → stdout until either side closes.
pub async fn run(socket: &Path) -> std::io::Result<()> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot reach the gpubook agent at {}: {e}",
                socket.display()
            ),
        )
    })?;
    // Served by root (the system agent) or by this user (their own agent), or nothing is
    // relayed: anyone else listening there is an impostor.
    let agent = stream.peer_cred()?.uid();
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if !gpubook_proto::paths::trusted_agent_uid(agent, me) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is served by uid {agent}, neither root nor you (uid {me}): not connecting",
                socket.display()
            ),
        ));
    }
    let (mut from_agent, mut to_agent) = stream.into_split();
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    // When the client is done, tell the agent and keep relaying its last answers: the
    // bridge ends when the agent closes its side.
    // Nor does a failed send end it: an agent that closed (a refusal) may have said why, and
    // that is relayed to the end.
    let up = async {
        if tokio::io::copy(&mut stdin, &mut to_agent).await.is_ok() {
            let _ = to_agent.shutdown().await;
        }
        std::future::pending::<std::io::Result<()>>().await
    };
    let down = async {
        tokio::io::copy(&mut from_agent, &mut stdout).await?;
        stdout.flush().await
    };
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}
