//! SSH secrets through the real OS keyring (gnome-keyring on a private D-Bus session): a
//! key's passphrase asked once, stored with consent, then taken from the keyring without
//! asking; a stale passphrase in the keyring removed and asked again; a password from the
//! keyring. The SSH part runs in a child process of this test binary that lives in that
//! session.

use gpubook_testkit::sshd;

use gpubook_client::ssh::{Options, Prompt, Session, SshError, SshHost};
use sshd::{ClientHome, KeyringSession, Sshd, User};
use std::sync::{Arc, Mutex};

const PASSPHRASE: &str = "correct horse battery";
const PASSWORD: &str = "carol's password";

/// Answers from a list; says `yes` to confirmations; counts the questions.
#[derive(Debug)]
struct Scripted {
    /// Answers, in order.
    answers: Mutex<Vec<String>>,
    /// What confirm() says.
    yes: bool,
    /// Questions asked.
    asked: Mutex<Vec<String>>,
}

impl Prompt for Scripted {
    fn secret(&self, _server: &str, question: &str) -> Option<String> {
        self.asked.lock().unwrap().push(question.to_string());
        let mut a = self.answers.lock().unwrap();
        (!a.is_empty()).then(|| a.remove(0))
    }

    fn confirm(&self, question: &str) -> bool {
        self.asked.lock().unwrap().push(question.to_string());
        self.yes
    }
}

fn scripted(answers: &[&str]) -> Arc<Scripted> {
    Arc::new(Scripted {
        answers: Mutex::new(answers.iter().map(|s| s.to_string()).collect()),
        yes: true,
        asked: Mutex::new(Vec::new()),
    })
}

async fn connect(spec: &str, opts: &Options) -> Result<Session, SshError> {
    let t = SshHost::resolve_with(spec, &opts.env)?;
    Session::connect(&t, opts).await
}

#[test]
fn passphrases_and_passwords_come_from_the_real_keyring() {
    if !sshd::available("ssh keyring") {
        return;
    }
    let Some(session) = KeyringSession::start("ssh keyring") else {
        return;
    };
    session.run_child("ssh_keyring_child", "ssh keyring ok");
    let stored = session.stored();
    assert!(!stored.is_empty(), "gnome-keyring stored nothing");
    for secret in [PASSPHRASE, PASSWORD] {
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret:?} is in the keyring's file in the clear"
        );
    }
}

/// Runs inside the private session of the test above (ignored on its own).
#[test]
#[ignore = "run by passphrases_and_passwords_come_from_the_real_keyring in its own D-Bus session"]
fn ssh_keyring_child() {
    if std::env::var_os("GPUBOOK_KEYRING_CHILD").is_none() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = Sshd::start("");
        let user = User::ensure("gpb-ssh-carol");
        user.set_password(PASSWORD);
        let home = ClientHome::new();
        let key = sshd::keygen(&home.ssh("id_ed25519"), PASSPHRASE);
        user.authorize(&key.with_extension("pub"));
        home.host("lab1", &server, &user.name, "");
        home.trust(&server);
        let mut opts = home.options(None);
        opts.keyring = true;

        // Nothing stored: asked, and stored with consent.
        let prompt = scripted(&[PASSPHRASE]);
        opts.prompt = Some(prompt.clone());
        let s = connect("lab1", &opts)
            .await
            .expect("the passphrase asked for");
        assert!(s.run("true", b"").await.unwrap().success());
        let asked = prompt.asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 2, "{asked:?}");
        assert!(asked[1].contains("keyring"), "{asked:?}");
        let entry = keyring::Entry::new("gpubook-ssh", &format!("key:{}", key.display())).unwrap();
        assert_eq!(entry.get_password().unwrap(), PASSPHRASE);

        // Stored: nobody is asked.
        opts.prompt = None;
        let s = connect("lab1", &opts)
            .await
            .expect("the passphrase from the keyring");
        assert!(s.run("true", b"").await.unwrap().success());

        // A stale passphrase in the keyring: removed, the person asked again.
        entry.set_password("an old passphrase").unwrap();
        let prompt = scripted(&[PASSPHRASE]);
        opts.prompt = Some(prompt.clone());
        connect("lab1", &opts).await.expect("asked again");
        assert_eq!(entry.get_password().unwrap(), PASSPHRASE);
        entry.set_password("an old passphrase").unwrap();
        opts.prompt = None;
        let e = connect("lab1", &opts).await.unwrap_err();
        assert!(
            matches!(e, SshError::WrongPassphrase { missing: false, .. }),
            "{e:?}"
        );
        assert!(entry.get_password().is_err(), "the wrong one was removed");

        // A password from the keyring, on a server that takes only passwords.
        let pw_only = Sshd::start("PubkeyAuthentication no\nKbdInteractiveAuthentication no\n");
        let t_spec = format!("{}@127.0.0.1:{}", user.name, pw_only.port);
        std::fs::write(home.ssh("known_hosts"), pw_only.known_hosts_line()).unwrap();
        let t = SshHost::resolve_with(&t_spec, &opts.env).unwrap();
        keyring::Entry::new(
            "gpubook-ssh",
            &format!("password:{}@127.0.0.1:{}", user.name, pw_only.port),
        )
        .unwrap()
        .set_password(PASSWORD)
        .unwrap();
        let s = Session::connect(&t, &opts)
            .await
            .expect("the password from the keyring");
        assert!(s.run("true", b"").await.unwrap().success());
    });
    println!("ssh keyring ok");
}
