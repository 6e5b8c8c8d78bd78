//! Declares every app command so that capabilities govern them (capabilities/default.json
//! allows exactly these, checked by crates/desktop/tests/contract.rs); a command not declared
//! in crates/desktop/src/contract/declare.rs cannot be invoked.

// The contract's declaration (docs/app-contract.md): only the commands' names are used here.
include!("../crates/desktop/src/contract/declare.rs");

macro_rules! command_names {
    ($( $(#[doc = $doc:literal])* $domain:ident :: $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty ; )*) => {
        &[$(stringify!($name)),*]
    };
}

/// The app's commands, as declared in crates/desktop/src/contract/declare.rs.
const COMMANDS: &[&str] = with_app_commands!(command_names);

/// The app embeds ../ui/dist at compile time. Where the UI has not been built (a fresh clone
/// running clippy or the unit tests), a placeholder page stands in so the Rust side still
/// compiles; scripts/app-build.sh builds the real UI first.
fn ensure_frontend() {
    let dist = std::path::Path::new("../ui/dist");
    if !dist.join("index.html").exists() {
        std::fs::create_dir_all(dist).expect("create ../ui/dist");
        std::fs::write(
            dist.join("index.html"),
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>gpubook</title></head>\
             <body><p>The gpubook UI was not built: run scripts/app-build.sh.</p></body></html>\n",
        )
        .expect("write the placeholder page");
    }
}

fn main() {
    println!("cargo:rerun-if-changed=../crates/desktop/src/contract/declare.rs");
    ensure_frontend();
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri build step");
}
