//! Asking on the terminal for what SSH needs: a passphrase or password (not echoed) and
//! yes/no questions (trust this host key? keep the passphrase in the keyring?).
//!
//! Questions go to the controlling terminal (`/dev/tty`), as `ssh` does, so they work while
//! standard output is piped; without a terminal nobody is asked and SSH reports what is
//! missing instead.

use gpubook_client::ssh::Prompt;
use std::io::{BufRead, BufReader, IsTerminal, Write};

/// The terminal as the one who answers.
#[derive(Debug, Clone, Copy)]
pub struct TerminalPrompt;

impl TerminalPrompt {
    /// A prompt when standard input is a terminal and `/dev/tty` can be opened; else none.
    pub fn if_interactive() -> Option<Self> {
        let tty = std::io::stdin().is_terminal()
            && std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/tty")
                .is_ok();
        tty.then_some(TerminalPrompt)
    }
}

impl Prompt for TerminalPrompt {
    fn secret(&self, server: &str, question: &str) -> Option<String> {
        let q = question.trim_end().trim_end_matches(':');
        rpassword::prompt_password(format!("{server}: {q}: "))
            .ok()
            .filter(|s| !s.is_empty())
    }

    fn confirm(&self, question: &str) -> bool {
        let Ok(mut tty) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
        else {
            return false;
        };
        if write!(tty, "{question} [y/N] ")
            .and_then(|()| tty.flush())
            .is_err()
        {
            return false;
        }
        let mut line = String::new();
        if BufReader::new(tty).read_line(&mut line).is_err() {
            return false;
        }
        matches!(line.trim(), "y" | "Y" | "yes" | "Yes" | "YES")
    }
}
