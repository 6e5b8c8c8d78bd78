//! What `gpubook caldav` asks on the terminal: the password (echo off, or the first line of
//! standard input) and questions.

use crate::Failure;
use anyhow::Context;
use gpubook_client::secrets::Secret;
use std::io::{BufRead, IsTerminal, Read, Write};

/// The password on standard input (its first line).
pub(super) fn read_stdin_password() -> Result<Secret, Failure> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("cannot read the password from standard input")?;
    let line = s.lines().next().unwrap_or_default().to_string();
    if line.is_empty() {
        return Err(crate::usage("no password on standard input".into()));
    }
    Ok(Secret::new(line))
}

/// The terminal's echo, off while this lives (when stdin is a terminal).
#[cfg(unix)]
struct EchoOff(Option<libc::termios>);

#[cfg(unix)]
impl EchoOff {
    fn new() -> Self {
        // SAFETY: termios is plain data that tcgetattr fills in; fd 0 is a terminal (checked).
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return Self(None);
        }
        let saved = t;
        t.c_lflag &= !libc::ECHO;
        t.c_lflag |= libc::ECHONL;
        // SAFETY: sets the attributes just read, with echo off.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        Self(Some(saved))
    }
}

#[cfg(unix)]
impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores what tcgetattr read.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
}

/// The console's echo, off while this lives (when stdin is a console).
#[cfg(windows)]
struct EchoOff(Option<u32>);

#[cfg(windows)]
impl EchoOff {
    fn new() -> Self {
        use windows_sys::Win32::System::Console::{
            GetConsoleMode, GetStdHandle, SetConsoleMode, ENABLE_ECHO_INPUT, STD_INPUT_HANDLE,
        };
        let mut mode = 0;
        // SAFETY: the process's own stdin handle and a u32 to fill in.
        unsafe {
            let h = GetStdHandle(STD_INPUT_HANDLE);
            if GetConsoleMode(h, &mut mode) == 0 {
                return Self(None);
            }
            SetConsoleMode(h, mode & !ENABLE_ECHO_INPUT);
        }
        Self(Some(mode))
    }
}

#[cfg(windows)]
impl Drop for EchoOff {
    fn drop(&mut self) {
        use windows_sys::Win32::System::Console::{GetStdHandle, SetConsoleMode, STD_INPUT_HANDLE};
        if let Some(mode) = self.0 {
            // SAFETY: restores the mode read from the process's own stdin handle.
            unsafe { SetConsoleMode(GetStdHandle(STD_INPUT_HANDLE), mode) };
            // The newline typed was not echoed.
            eprintln!();
        }
    }
}

/// Asks on the terminal with echo off.
pub(super) fn read_terminal_password(prompt: &str) -> Result<String, Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(crate::usage(
            "no terminal to ask for the password on: give it with --password-stdin".into(),
        ));
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let echo = EchoOff::new();
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    drop(echo);
    r.context("cannot read the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub(super) fn ask(question: &str) -> Result<bool, Failure> {
    Ok(matches!(
        answer(question)?.as_str(),
        "y" | "Y" | "yes" | "Yes"
    ))
}

/// Asks `question` on stderr; the line typed, trimmed.
pub(super) fn answer(question: &str) -> Result<String, Failure> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    Ok(line.trim().to_string())
}
