//! The Tauri commands, expanded from the contract's declaration
//! (crates/desktop/src/contract/declare.rs; docs/app-contract.md): each is a thin wrapper
//! that hands its arguments to `commands::<domain>::<name>`, so a body whose arguments or
//! answer differ from the declaration does not compile.

use gpubook_desktop::contract::types::*;

use crate::commands::{self, Answer};

macro_rules! tauri_commands {
    ($( $(#[doc = $doc:literal])* $domain:ident :: $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty ; )*) => {
        $(
            $(#[doc = $doc])*
            #[tauri::command]
            async fn $name(app: tauri::AppHandle, $($arg: $ty),*) -> Answer<$ret> {
                commands::$domain::$name(&app, $($arg),*).await
            }
        )*

        /// The handler of every declared command.
        pub fn all() -> impl Fn(tauri::ipc::Invoke) -> bool + Send + Sync + 'static {
            tauri::generate_handler![$($name),*]
        }
    };
}
gpubook_desktop::with_app_commands!(tauri_commands);
