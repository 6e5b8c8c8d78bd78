//! Writes the contract's declaration as TypeScript (`ui/src/lib/api.ts`) and as the tables of
//! docs/app-contract.md, with the types ts-rs gives the Rust types (as in ui/src/lib/wire/).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path};

use ts_rs::{Config, Dependency, TypeVisitor, TS};

use super::types::*;

/// A Rust type as TypeScript names it, with the generated files that name needs.
struct TsType {
    /// "Array<ServerView>", "string | null".
    name: String,
    /// An `Option`: the argument may be left out.
    optional: bool,
    /// Type name → module (relative to ui/src/lib/) to import it from.
    imports: BTreeMap<String, String>,
}

/// Adds `T` (where it is a generated file) and its type parameters to `imports`.
fn collect<T: TS + 'static + ?Sized>(cfg: &Config, imports: &mut BTreeMap<String, String>) {
    if let Some(dep) = Dependency::from_ty::<T>(cfg) {
        imports.insert(dep.ts_name, module(&dep.output_path));
    }
    struct Visit<'a>(&'a Config, &'a mut BTreeMap<String, String>);
    impl TypeVisitor for Visit<'_> {
        fn visit<U: TS + 'static + ?Sized>(&mut self) {
            collect::<U>(self.0, self.1);
        }
    }
    T::visit_generics(&mut Visit(cfg, imports));
}

/// "./wire/BookRequest" for "BookRequest.ts", "./app/ServerView" for "../app/ServerView.ts"
/// (ts-rs paths are relative to ui/src/lib/wire/).
fn module(output: &Path) -> String {
    let mut parts = vec!["wire".to_string()];
    for c in output.with_extension("").components() {
        match c {
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    format!("./{}", parts.join("/"))
}

fn ts<T: TS + 'static>(cfg: &Config) -> TsType {
    let mut imports = BTreeMap::new();
    collect::<T>(cfg, &mut imports);
    TsType {
        name: T::name(cfg),
        optional: std::any::type_name::<T>().starts_with("core::option::Option<"),
        imports,
    }
}

/// One command of the declaration.
struct Command {
    name: &'static str,
    doc: Vec<&'static str>,
    args: Vec<(&'static str, TsType)>,
    answer: TsType,
}

/// One event of the declaration.
struct Event {
    marker: &'static str,
    name: &'static str,
    doc: Vec<&'static str>,
    payload: TsType,
}

macro_rules! command_list {
    ($( $(#[doc = $doc:literal])* $domain:ident :: $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty ; )*) => {
        fn commands(cfg: &Config) -> Vec<Command> {
            vec![$(Command {
                name: stringify!($name),
                doc: vec![$($doc),*],
                args: vec![$((stringify!($arg), ts::<$ty>(cfg))),*],
                answer: ts::<$ret>(cfg),
            }),*]
        }
    };
}
crate::with_app_commands!(command_list);

macro_rules! event_list {
    ($( $(#[doc = $doc:literal])* $marker:ident = $wire:literal => $payload:ty ; )*) => {
        fn events(cfg: &Config) -> Vec<Event> {
            vec![$(Event {
                marker: stringify!($marker),
                name: $wire,
                doc: vec![$($doc),*],
                payload: ts::<$payload>(cfg),
            }),*]
        }
    };
}
crate::with_app_events!(event_list);

/// The config of ui/src/lib/wire/: u64 as `number` (.cargo/config.toml).
fn config() -> Config {
    Config::new().with_large_int("number")
}

/// "add_server" → "addServer" (Tauri's keys for arguments, api.ts's method names).
fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in snake.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A doc comment in TypeScript, indented by `indent`.
fn jsdoc(out: &mut String, doc: &[&str], indent: &str) {
    match doc {
        [] => {}
        [one] => {
            let _ = writeln!(out, "{indent}/** {} */", one.trim());
        }
        lines => {
            let _ = writeln!(out, "{indent}/**");
            for l in lines {
                let _ = writeln!(out, "{indent} * {}", l.trim());
            }
            let _ = writeln!(out, "{indent} */");
        }
    }
}

/// An argument list `a: T, b?: U | null`: `Option`s after the last required one may be left out.
fn params(c: &Command) -> String {
    let last_required = c.args.iter().rposition(|(_, t)| !t.optional);
    let list: Vec<String> = c
        .args
        .iter()
        .enumerate()
        .map(|(i, (n, t))| {
            let may_skip = t.optional && last_required.is_none_or(|r| i > r);
            format!(
                "{}{}: {}",
                camel(n),
                if may_skip { "?" } else { "" },
                t.name
            )
        })
        .collect();
    list.join(", ")
}

/// The text of ui/src/lib/api.ts.
pub fn api_ts() -> String {
    let cfg = config();
    let (commands, events) = (commands(&cfg), events(&cfg));
    let mut imports = BTreeMap::new();
    for c in &commands {
        imports.extend(c.answer.imports.clone());
        for (_, t) in &c.args {
            imports.extend(t.imports.clone());
        }
    }
    for e in &events {
        imports.extend(e.payload.imports.clone());
    }

    let mut o = String::new();
    o.push_str(
        "// Generated from crates/desktop/src/contract/declare.rs by\n\
         // `cargo test -p gpubook-desktop --features ts`: do not edit. The app's contract with\n\
         // its Rust side, explained in docs/app-contract.md. Components call `app.api.x(...)`.\n",
    );
    for (name, module) in &imports {
        let _ = writeln!(o, "import type {{ {name} }} from '{module}';");
    }

    o.push_str("\n/** The arguments of each command, as they travel (camelCase keys). */\n");
    o.push_str("export interface CommandArgs {\n");
    for c in &commands {
        let fields: Vec<String> = c
            .args
            .iter()
            .map(|(n, t)| {
                let opt = if t.optional { "?" } else { "" };
                format!("{}{opt}: {}", camel(n), t.name)
            })
            .collect();
        let body = if fields.is_empty() {
            "Record<string, never>".to_string()
        } else {
            format!("{{ {} }}", fields.join("; "))
        };
        let _ = writeln!(o, "  {}: {body};", c.name);
    }
    o.push_str("}\n\n/** What each command answers (each may reject with an AppError). */\n");
    o.push_str("export interface CommandResults {\n");
    for c in &commands {
        let _ = writeln!(o, "  {}: {};", c.name, c.answer.name);
    }
    o.push_str("}\n\n/** A command's name. */\nexport type Command = keyof CommandArgs;\n\n");
    o.push_str("/** The payload of each event the app pushes, by the event's name. */\n");
    o.push_str("export interface EventPayloads {\n");
    for e in &events {
        let _ = writeln!(o, "  '{}': {};", e.name, e.payload.name);
    }
    o.push_str("}\n\n/** An event's name. */\nexport type EventName = keyof EventPayloads;\n\n");
    o.push_str(
        "/** What the app needs of its host: Tauri (backend.ts), or the in-memory mock (mock.ts). */\n\
         export interface Host {\n  \
           /** Calls a command; rejects with an AppError. */\n  \
           invoke<C extends Command>(cmd: C, args: CommandArgs[C]): Promise<CommandResults[C]>;\n  \
           /** Listens to an event; resolves to the function that stops listening. */\n  \
           listen<E extends EventName>(event: E, cb: (payload: EventPayloads[E]) => void): Promise<() => void>;\n  \
           /** True for the in-memory mock. */\n  \
           readonly mock: boolean;\n\
         }\n\n\
         /** A handler per command: what the mock implements, so a command it lacks does not compile. */\n\
         export type Handlers = {\n  \
           [C in Command]: (args: CommandArgs[C]) => CommandResults[C] | Promise<CommandResults[C]>;\n\
         };\n\n\
         /** Every command as a typed call, and a listener per event. */\n\
         export interface Api {\n",
    );
    for c in &commands {
        jsdoc(&mut o, &c.doc, "  ");
        let _ = writeln!(
            o,
            "  {}({}): Promise<{}>;",
            camel(c.name),
            params(c),
            c.answer.name
        );
    }
    for e in &events {
        jsdoc(&mut o, &e.doc, "  ");
        let _ = writeln!(
            o,
            "  on{}(cb: (payload: {}) => void): Promise<() => void>;",
            e.marker, e.payload.name
        );
    }
    o.push_str("}\n\n/** The typed calls over `host`. */\nexport function makeApi(host: Host): Api {\n  return {\n");
    for c in &commands {
        let names: Vec<String> = c.args.iter().map(|(n, _)| camel(n)).collect();
        let _ = writeln!(
            o,
            "    {}: ({}) => host.invoke('{}', {{ {} }}),",
            camel(c.name),
            names.join(", "),
            c.name,
            names.join(", ")
        );
    }
    for e in &events {
        let _ = writeln!(
            o,
            "    on{}: (cb) => host.listen('{}', cb),",
            e.marker, e.name
        );
    }
    o.push_str("  };\n}\n");
    o.replace("{  }", "{}")
}

/// The tables of commands and events for docs/app-contract.md (between its markers).
pub fn doc_table() -> String {
    let cfg = config();
    let one_line = |doc: &[&str]| {
        doc.iter()
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(" ")
            .replace('|', "\\|")
    };
    let mut o = String::from(
        "| Command | Arguments (camelCase on the wire) | Answers | What it does |\n|---|---|---|---|\n",
    );
    for c in commands(&cfg) {
        let args: Vec<String> = c
            .args
            .iter()
            .map(|(n, t)| format!("`{}: {}`", camel(n), t.name.replace('|', "\\|")))
            .collect();
        let _ = writeln!(
            o,
            "| `{}` | {} | `{}` | {} |",
            c.name,
            args.join(", "),
            c.answer.name,
            one_line(&c.doc)
        );
    }
    o.push_str("\n| Event | Payload | When |\n|---|---|---|\n");
    for e in events(&cfg) {
        let _ = writeln!(
            o,
            "| `{}` | `{}` | {} |",
            e.name,
            e.payload.name,
            one_line(&e.doc)
        );
    }
    o
}
