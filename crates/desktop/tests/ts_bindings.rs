//! The app-only TypeScript types (ui/src/lib/app/) are what the Rust types generate now.
//!
//! Regenerate with `cargo test -p gpubook-desktop --features ts` (the `#[ts(export)]` tests
//! write ui/src/lib/app/ beside ui/src/lib/wire/, set in .cargo/config.toml) and commit them.
#![cfg(feature = "ts")]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use gpubook_desktop::{
    AppError, AsapAnyResponse, CaldavStatus, EventPayload, LogPayload, ReadingsPayload, ServerView,
    Settings,
};
use ts_rs::{Config, TS};

fn ts_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ts") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(name, fs::read(&path).unwrap());
        }
    }
    files
}

#[test]
fn committed_app_types_match_the_rust_types() {
    let tmp = tempfile::tempdir().unwrap();
    // Wire types go to <out>/ and app types to <out>/../app/, as in the repository.
    let out = tmp.path().join("wire");
    let cfg = Config::new().with_large_int("number").with_out_dir(&out);
    AppError::export_all(&cfg).unwrap();
    ServerView::export_all(&cfg).unwrap();
    Settings::export_all(&cfg).unwrap();
    EventPayload::export_all(&cfg).unwrap();
    ReadingsPayload::export_all(&cfg).unwrap();
    LogPayload::export_all(&cfg).unwrap();
    AsapAnyResponse::export_all(&cfg).unwrap();
    CaldavStatus::export_all(&cfg).unwrap();

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let generated = ts_files(&tmp.path().join("app"));
    let committed = ts_files(&root.join("ui/src/lib/app"));
    assert!(!generated.is_empty(), "ts-rs generated nothing");
    let mut problems = Vec::new();
    for (name, text) in &generated {
        match committed.get(name) {
            None => problems.push(format!("ui/src/lib/app/{name} is missing")),
            Some(old) if old != text => {
                problems.push(format!("ui/src/lib/app/{name} is out of date"))
            }
            Some(_) => {}
        }
    }
    for name in committed.keys() {
        if !generated.contains_key(name) {
            problems.push(format!("ui/src/lib/app/{name} is stale"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}; regenerate with `cargo test -p gpubook-desktop --features ts` and commit ui/src/lib/app/",
        problems.join("; ")
    );
}
