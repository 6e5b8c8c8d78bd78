//! "This computer": the app starts gpubook-agent when none listens (NVML, else 4 simulated
//! GPUs) and uses a running one otherwise.
#![cfg(target_os = "linux")]

use gpubook_desktop::local::{self, LocalAgent};

fn agent_binary() -> Option<std::path::PathBuf> {
    // target/<profile>/deps/<test> → target/<profile>/gpubook-agent (built by the workspace).
    let p = std::env::current_exe()
        .ok()?
        .parent()?
        .parent()?
        .join("gpubook-agent");
    p.is_file().then_some(p)
}

#[test]
fn starts_an_agent_when_none_listens_and_uses_a_running_one() {
    let Some(bin) = agent_binary() else {
        eprintln!(
            "SKIPPED: gpubook-agent is not built next to the tests (cargo build -p gpubook-agent)"
        );
        return;
    };
    // This test binary runs this one test only, so the environment is its own.
    std::env::set_var("GPUBOOK_AGENT_BINARY", &bin);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let started = local::ensure(&socket, &dir.path().join("state")).unwrap();
    let LocalAgent::Started { pid, gpus } = started else {
        panic!("expected a started agent, got {started:?}");
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let welcome = rt.block_on(async {
        gpubook_client::Connection::unix(&socket, "test")
            .await
            .unwrap()
            .welcome()
            .clone()
    });
    // Where NVML is absent the agent says its GPUs are simulated.
    assert_eq!(welcome.simulated, gpus == "sim:4", "{gpus} {welcome:?}");
    assert_eq!(
        local::ensure(&socket, &dir.path().join("state")),
        Ok(LocalAgent::Found)
    );
    // SAFETY: a plain kill(2) of the agent this test started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
}
