//! The capabilities of the main window allow exactly the commands of the contract
//! (crates/desktop/src/contract/declare.rs): a command added there and not allowed here, or
//! allowed here and gone from the contract, fails this test.

use std::collections::BTreeSet;
use std::path::PathBuf;

use gpubook_desktop::contract::{COMMANDS, EVENTS};

/// The permissions src-tauri/capabilities/default.json must hold: listening to events, and
/// tauri-build's `allow-<command>` for each command of the contract.
fn expected() -> BTreeSet<String> {
    let mut set: BTreeSet<String> = ["core:event:allow-listen", "core:event:allow-unlisten"]
        .into_iter()
        .map(String::from)
        .collect();
    set.extend(
        COMMANDS
            .iter()
            .map(|c| format!("allow-{}", c.replace('_', "-"))),
    );
    set
}

#[test]
fn the_capabilities_allow_exactly_the_declared_commands() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../src-tauri/capabilities/default.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let allowed: BTreeSet<String> = json["permissions"]
        .as_array()
        .expect("a permissions list")
        .iter()
        .map(|p| p.as_str().expect("a permission name").to_string())
        .collect();
    let want = expected();
    let missing: Vec<_> = want.difference(&allowed).collect();
    let extra: Vec<_> = allowed.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "src-tauri/capabilities/default.json differs from the contract: missing {missing:?}, \
         not declared {extra:?}"
    );
}

#[test]
fn every_command_and_event_is_named_once() {
    let commands: BTreeSet<_> = COMMANDS.iter().collect();
    assert_eq!(
        commands.len(),
        COMMANDS.len(),
        "a command is declared twice"
    );
    let events: BTreeSet<_> = EVENTS.iter().collect();
    assert_eq!(events.len(), EVENTS.len(), "an event is declared twice");
    assert!(EVENTS.iter().all(|e| e.starts_with("gpubook://")));
}
