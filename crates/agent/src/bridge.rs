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
    let (mut from_agent, mut to_agent) = stream.into_split();
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    // When the client is done, tell the agent and keep relaying its last answers: the
    // bridge ends when the agent closes its side.
    let up = async {
        tokio::io::copy(&mut stdin, &mut to_agent).await?;
        to_agent.shutdown().await?;
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
