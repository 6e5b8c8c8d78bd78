//! A host key marked `@revoked` in any known_hosts file is refused against a real sshd, even
//! though another file (the person's) trusts it, and even when new keys are accepted. Needs
//! root and sshd (see sshd/mod.rs).

use gpubook_testkit::sshd;

use gpubook_client::ssh::{Session, SshError, SshErrorKind, SshHost};
use sshd::{ClientHome, Sshd, User};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_revoked_by_the_admin_is_refused_though_the_person_trusts_it() {
    if !sshd::available("revoked host key") {
        return;
    }
    let server = Sshd::start("");
    let user = User::ensure("gpb-ssh-revoked");
    let home = ClientHome::new();
    user.authorize(&home.key.with_extension("pub"));
    let global = home.home().join("ssh_known_hosts");
    std::fs::write(&global, "").unwrap();
    home.host(
        "lab1",
        &server,
        &user.name,
        &format!("  GlobalKnownHostsFile {}", global.display()),
    );
    home.trust(&server);
    let connect = |accept: bool| {
        let mut opts = home.options(None);
        opts.accept_new_host_key = accept;
        async move {
            let t = SshHost::resolve_with("lab1", &opts.env)?;
            Session::connect(&t, &opts).await
        }
    };
    connect(false).await.expect("trusted and not revoked");

    // The admin revokes the key in the system's file; the person's still lists it.
    std::fs::write(
        &global,
        format!("# compromised\n@revoked {}", server.known_hosts_line()),
    )
    .unwrap();
    for accept in [false, true] {
        let e = connect(accept).await.unwrap_err();
        match &e {
            SshError::RevokedHostKey {
                fingerprint,
                file,
                line,
                ..
            } => {
                assert_eq!(fingerprint, &server.fingerprint());
                assert_eq!(file, &global);
                assert_eq!(*line, 2);
            }
            other => panic!("expected the revoked key refused, got {other:?}"),
        }
        assert_eq!(e.kind(), SshErrorKind::HostKeyChanged);
        assert!(e.to_string().contains("REVOKED"), "{e}");
        assert!(!e.to_string().contains("ssh-keygen -R"), "{e}");
        assert!(
            e.to_string().contains(&format!("{}:2", global.display())),
            "{e}"
        );
    }
}
