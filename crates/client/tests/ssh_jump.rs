//! ProxyJump through real sshds: one hop and a chain of two, each hop resolved from the SSH
//! config again and reached through a direct-tcpip channel on the hop before it (the hops'
//! logs show the tunnels); a target behind the hop that nobody serves is reported as
//! unreachable through that hop; the agent deployed and reached behind a jump host with a
//! key that only the ssh-agent holds.

use gpubook_testkit::sshd;

use gpubook_client::deploy::{self, DeployOptions, Reached};
use gpubook_client::ssh::{Session, SshErrorKind, SshHost};
use sshd::{ClientHome, SshAgent, Sshd, User};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_one_hop_and_a_chain_of_two() {
    if !sshd::available("ssh ProxyJump") {
        return;
    }
    let jump1 = Sshd::start("LogLevel DEBUG1\n");
    let jump2 = Sshd::start("LogLevel DEBUG1\n");
    let lab = Sshd::start("");
    let user = User::ensure("gpb-ssh-jump");
    let home = ClientHome::new();
    user.authorize(&home.key.with_extension("pub"));
    for s in [&jump1, &jump2, &lab] {
        home.trust(s);
    }
    home.host("gw1", &jump1, &user.name, "");
    home.host("gw2", &jump2, &user.name, "");
    home.host("lab1", &lab, &user.name, "  ProxyJump gw1\n");
    home.host("lab2", &lab, &user.name, "  ProxyJump gw1,gw2\n");
    let opts = home.options(None);

    let t = SshHost::resolve_with("lab1", &opts.env).unwrap();
    assert_eq!(t.proxy_jump.len(), 1);
    assert_eq!(t.proxy_jump[0].port, jump1.port);
    let s = Session::connect(&t, &opts).await.expect("through gw1");
    let out = s.run("echo $SSH_CONNECTION", b"").await.unwrap();
    // The lab sees the connection coming from sshd's own tunnel, to its port.
    let conn = String::from_utf8_lossy(&out.stdout);
    assert!(conn.trim().ends_with(&format!(" {}", lab.port)), "{conn}");
    let (mut rd, mut wr) = s.exec_stream("cat").await.unwrap();
    wr.write_all(b"through the hop\n").await.unwrap();
    let mut got = [0u8; 16];
    rd.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"through the hop\n");
    let tunnel = format!("port {}", lab.port);
    sshd::wait_until("gw1 to log the tunnel", || {
        let log = jump1.log();
        log.contains("direct-tcpip") && log.contains(&tunnel)
    });
    drop((rd, wr, s));

    let t = SshHost::resolve_with("lab2", &opts.env).unwrap();
    assert_eq!(
        t.proxy_jump.iter().map(|h| h.port).collect::<Vec<_>>(),
        vec![jump1.port, jump2.port]
    );
    let before = jump1.log().matches("direct-tcpip").count();
    let s = Session::connect(&t, &opts)
        .await
        .expect("through gw1 then gw2");
    assert!(s.run("true", b"").await.unwrap().success());
    // gw1 tunnels to gw2, and gw2 to the lab.
    assert!(jump1.log().matches("direct-tcpip").count() > before);
    assert!(jump1.log().contains(&format!("port {}", jump2.port)));
    sshd::wait_until("gw2 to log the tunnel", || {
        jump2.log().contains("direct-tcpip") && jump2.log().contains(&tunnel)
    });

    // Nobody serves the port behind the hop.
    let closed = sshd::free_port();
    home.config(&format!(
        "Host nowhere\n  HostName 127.0.0.1\n  Port {closed}\n  User {}\n  ProxyJump gw1\n",
        user.name
    ));
    let t = SshHost::resolve_with("nowhere", &opts.env).unwrap();
    let e = Session::connect(&t, &opts).await.unwrap_err();
    assert_eq!(e.kind(), SshErrorKind::Unreachable, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("nowhere") && msg.contains("via gw1"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_is_deployed_and_reached_behind_a_jump_host_with_an_ssh_agent_key() {
    if !sshd::available("ssh deploy behind a jump host") {
        return;
    }
    let gw = Sshd::start("");
    let lab = Sshd::start("");
    let user = User::fresh("gpb-ssh-behind");
    let home = ClientHome::new();
    // The key lives only in the ssh-agent, as a person's usually does.
    let agent = SshAgent::start();
    agent.add(&home.key);
    user.authorize(&home.key.with_extension("pub"));
    std::fs::remove_file(&home.key).unwrap();
    home.trust(&gw);
    home.trust(&lab);
    home.host("gw", &gw, &user.name, "");
    home.host("lab1", &lab, &user.name, "  ProxyJump gw\n");
    let opts = home.options(Some(&agent));
    let work = tempfile::tempdir().unwrap();
    let deploy = DeployOptions {
        binary: Some(sshd::runnable_copy(&sshd::agent_binary(), work.path())),
        gpus: Some("sim:2".into()),
        system_socket: Some("/nonexistent/gpubook-test/agent.sock".into()),
        ..DeployOptions::default()
    };
    let (conn, reached) = deploy::connect_agent_with("lab1", &opts, &deploy, "test")
        .await
        .expect("deployed through the jump host");
    assert!(
        matches!(reached, Reached::Started { uploaded: true, .. }),
        "{reached:?}"
    );
    assert_eq!(conn.welcome().user, user.name);
    drop(conn);
    let (conn, reached) = deploy::connect_agent_with("lab1", &opts, &deploy, "test")
        .await
        .unwrap();
    assert_eq!(reached, Reached::Running);
    assert!(matches!(
        conn.request(gpubook_proto::Request::Gpus(gpubook_proto::GpusRequest {}))
            .await,
        Ok(gpubook_proto::Response::Gpus(g)) if g.gpus.len() == 2
    ));
    drop(conn);
    user.kill_all();
}
