//! `gpubook caldav discover`, and the choice of a calendar when `gpubook caldav login` is
//! given the server's address rather than a calendar's URL: the person's calendars listed
//! (crates/client's discovery), one picked by name or number, or a new one made (`--create`).

use super::terminal::{answer, read_stdin_password, read_terminal_password};
use crate::{print_json, Failure};
use anyhow::anyhow;
use clap::Args;
use gpubook_client::caldav::{DiscoverError, Discovery, Found, FoundCalendar};
use gpubook_client::secrets::Secret;
use gpubook_proto::ErrorKind;
use std::io::IsTerminal;

/// The name a calendar made from the terminal's list gets.
const NEW: &str = "GPU bookings";

/// `gpubook caldav discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The CalDAV server's address, e.g. https://cloud.example.org (or any URL on it).
    #[arg(long)]
    url: String,
    /// The user name on the server (servers without accounts need none).
    #[arg(long)]
    user: Option<String>,
    /// Read the password from standard input instead of asking on the terminal.
    #[arg(long)]
    password_stdin: bool,
    /// Also make a new calendar for events with this name, e.g. "GPU bookings".
    #[arg(long, value_name = "NAME")]
    create: Option<String>,
}

/// How `login` picks the calendar at a server's address.
#[derive(Debug, Clone, Copy)]
pub struct Choice<'a> {
    /// A calendar by name or URL.
    pub calendar: Option<&'a str>,
    /// A new calendar with this name (one with that name already is used instead).
    pub create: Option<&'a str>,
    /// Whether the terminal may be asked.
    pub ask: bool,
}

/// `gpubook caldav discover`: the person's calendars, and a new one with `--create`.
pub async fn discover(a: &DiscoverArgs, json: bool) -> Result<(), Failure> {
    let password = match &a.user {
        None => Secret::new(""),
        Some(_) if a.password_stdin => read_stdin_password()?,
        Some(user) => Secret::new(read_terminal_password(&format!(
            "Password of {user} at {}: ",
            a.url
        ))?),
    };
    let d = Discovery::new(&a.url, a.user.as_deref(), password).map_err(failure)?;
    let mut found = d.find().await.map_err(failure)?;
    let created = match &a.create {
        Some(name) => {
            let c = d.create(&found, name).await.map_err(failure)?;
            found.calendars.push(c.clone());
            Some(c)
        }
        None => None,
    };
    if json {
        print_json(&serde_json::json!({ "found": found, "created": created }));
        return Ok(());
    }
    print_calendars(&found);
    let user = a.user.as_deref().unwrap_or("USER");
    match created {
        Some(c) => eprintln!(
            "Made {}. Use it with: gpubook caldav login --url {} --user {user}",
            c.name, c.url
        ),
        None => eprintln!(
            "Use one with: gpubook caldav login --url URL --user {user}\n\
             or make one:  gpubook caldav login --url {} --user {user} --create \"GPU bookings\"",
            a.url
        ),
    }
    Ok(())
}

/// The calendar at the server `address` that `login` uses, as `choice` says: by name or URL,
/// a new one, or asked on the terminal.
pub async fn choose(
    address: &str,
    user: &str,
    password: &Secret,
    choice: Choice<'_>,
) -> Result<String, Failure> {
    let d = Discovery::new(address, Some(user), password.clone()).map_err(failure)?;
    let found = d.find().await.map_err(failure)?;
    if let Some(name) = choice.create {
        if let Some(c) = found.named(name).filter(|c| c.events) {
            eprintln!("{user} already has a calendar called {}: using it.", c.name);
            return Ok(c.url.clone());
        }
        let c = d.create(&found, name).await.map_err(failure)?;
        eprintln!("Made the calendar {} at {}.", c.name, c.url);
        return Ok(c.url);
    }
    let usable: Vec<&FoundCalendar> = found.calendars.iter().filter(|c| c.events).collect();
    if let Some(name) = choice.calendar {
        return match found.named(name) {
            Some(c) if c.events => Ok(c.url.clone()),
            Some(c) => Err(crate::usage(format!(
                "{} takes no events: choose another",
                c.name
            ))),
            None => Err(crate::usage(format!(
                "{user} has no calendar called {name} at {address}; there are: {}",
                names(&usable)
            ))),
        };
    }
    if choice.ask && std::io::stdin().is_terminal() {
        print_calendars(&found);
        return ask(&d, &found, &usable).await;
    }
    Err(crate::usage(format!(
        "{address} is the server, not a calendar: choose one with --calendar NAME ({}), or make \
         one with --create \"GPU bookings\"",
        names(&usable)
    )))
}

/// Asks which calendar, or to make "GPU bookings".
async fn ask(d: &Discovery, found: &Found, usable: &[&FoundCalendar]) -> Result<String, Failure> {
    let new = usable.len() + 1;
    let line = answer(&format!(
        "Which calendar for your bookings? 1-{} ({new}: make a new one, \"{NEW}\"): ",
        usable.len()
    ))?;
    match line.parse::<usize>() {
        Ok(n) if (1..new).contains(&n) => Ok(usable[n - 1].url.clone()),
        Ok(n) if n == new => {
            let c = d.create(found, NEW).await.map_err(failure)?;
            eprintln!("Made the calendar {} at {}.", c.name, c.url);
            Ok(c.url)
        }
        _ => Err(crate::usage(format!(
            "no calendar numbered {:?}",
            line.trim()
        ))),
    }
}

/// The calendars, numbered as [`ask`] counts them (those for events first).
fn print_calendars(found: &Found) {
    println!("Calendars at {}:", found.home);
    let (events, others): (Vec<_>, Vec<_>) = found.calendars.iter().partition(|c| c.events);
    for (i, c) in events.iter().enumerate() {
        println!("  {:>2}. {:<24} {}", i + 1, c.name, c.url);
    }
    for c in others {
        println!("      {:<24} {} (takes no events)", c.name, c.url);
    }
    if events.is_empty() {
        println!("  (none for events yet)");
    }
}

fn names(cals: &[&FoundCalendar]) -> String {
    if cals.is_empty() {
        return "none for events yet".into();
    }
    cals.iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A discovery error with its exit status, as `caldav`'s: 3 refused, 2 not a CalDAV server,
/// 4 no calendar home, 5 the server is away or failing.
fn failure(e: DiscoverError) -> Failure {
    let (code, kind) = match &e {
        DiscoverError::Unauthorized { .. } => (3, ErrorKind::NotAllowed),
        DiscoverError::BadAddress { .. } | DiscoverError::NotCaldav { .. } => {
            (2, ErrorKind::Invalid)
        }
        DiscoverError::NoCalendarHome { .. } => (4, ErrorKind::NotFound),
        DiscoverError::Http(e) if e.is_transient() => (5, ErrorKind::Unavailable),
        DiscoverError::Http(_) => (1, ErrorKind::Invalid),
    };
    Failure {
        code,
        error: anyhow!(e),
        kind: Some(kind),
    }
}
