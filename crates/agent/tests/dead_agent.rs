//! What a client sees when its agent dies: an error it can show, never a wait without end.

mod common;

use common::{AgentProcess, DEADLINE};
use gpubook_client::ClientError;
use gpubook_proto::{ListRequest, Request};
use std::time::Duration;

/// How long a request on a dead connection may take to fail.
const LIMIT: Duration = Duration::from_secs(5);

/// A client whose agent died must be told so when it asks, not left waiting: the CLI and the
/// app would hang forever on the next command.
#[tokio::test]
async fn a_request_after_the_agent_died_fails_instead_of_hanging() {
    let mut agent = AgentProcess::start(2).await;
    let conn = agent.connect().await;
    let (_, mut events) = conn.subscribe(None, false).await.unwrap();
    agent.kill();
    // The subscription ends when the client has read the end of the connection.
    let ended =
        tokio::time::timeout(DEADLINE, async { while events.recv().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the client did not notice the agent died");

    // Telling takes no longer than noticing did; a few seconds is generous.
    let answer =
        tokio::time::timeout(LIMIT, conn.request(Request::List(ListRequest::default()))).await;
    match answer {
        Ok(Err(ClientError::ConnectionLost)) => {}
        Ok(other) => panic!("expected connection_lost, got {other:?}"),
        Err(_) => {
            panic!("a request on a connection whose agent died got no answer within {DEADLINE:?}")
        }
    }
}

/// An agent with no name would show people a blank server: refused before it starts.
#[test]
fn an_empty_server_name_is_refused() {
    for bad in ["", "  "] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpubook-agent"))
            .args(["serve", "--gpus", "sim:1", "--name", bad])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--socket")
            .arg(dir.path().join("agent.sock"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "--name {bad:?} was taken");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--name must not be empty"), "{bad:?}: {err}");
    }
}
