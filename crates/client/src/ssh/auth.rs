//! Logging in: ssh-agent, key files, keyboard-interactive, password.
