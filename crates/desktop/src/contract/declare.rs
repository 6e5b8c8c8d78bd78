// The app's contract with its web view, declared once: every command the web view may invoke
// and every event the app pushes to it. Read it as a table; docs/app-contract.md explains it.
//
// Everything else is generated from these two lists: the Tauri handlers and their list
// (src-tauri/src/handlers.rs), the command list build.rs gives tauri-build (which `include!`s
// this file), the typed ui/src/lib/api.ts and the table in docs/app-contract.md
// (`cargo test -p gpubook-desktop --features ts` writes both; tests check them), and the
// check of src-tauri/capabilities/default.json (crates/desktop/tests/contract.rs).
//
// A command: `domain::name(arg: Type, ...) -> Answer;` where `domain` is its module under
// src-tauri/src/commands/, which holds `pub async fn name(app: &AppHandle, arg: Type, ...)
// -> Answer<Answer>`. Arguments travel as camelCase keys; an `Option` may be left out.
// Every command may reject with an `AppError`. An event: `Marker = "name" => Payload;`.
// The types are those of `gpubook_desktop::contract::types`.

/// Calls `$callback!` with the declaration of every command of the app (see declare.rs).
#[macro_export]
macro_rules! with_app_commands {
    ($callback:ident) => {
        $callback! {
            /// Every server with its state.
            servers::servers() -> Vec<ServerView>;
            /// Adds a server: an alias from ~/.ssh/config, user@host[:port], or unix:PATH. An
            /// unknown host key rejects with `host_key_unknown` and its fingerprint; a login that
            /// needs a password or passphrase rejects with `auth`, and the UI asks again with
            /// `secret` (kept in memory for this run, in the OS keyring only if `remember`).
            servers::add_server(spec: String, secret: Option<String>, remember: Option<bool>) -> ServerView;
            /// Adds a server after the person accepted its host key `fingerprint`.
            servers::accept_host_key(spec: String, fingerprint: String, secret: Option<String>, remember: Option<bool>) -> ServerView;
            /// Removes a server from the app and the person's list.
            servers::remove_server(id: String) -> ();
            /// The Hosts of the person's ~/.ssh/config (and its Includes) that "Add server" offers.
            servers::ssh_hosts() -> Vec<String>;
            /// Signs in to a server of the list whose login was refused, with the password or key
            /// passphrase the person typed (kept in the OS keyring only if `remember`).
            servers::sign_in(id: String, secret: Option<String>, remember: Option<bool>) -> ServerView;
            /// The GPUs of `server`.
            bookings::gpus(server: String) -> GpusResponse;
            /// The bookings of `server` overlapping `from..to`.
            bookings::bookings(server: String, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Booking>;
            /// The policy of `server` and the person's role there.
            bookings::policy(server: String) -> PolicyResponse;
            /// The maintenance periods of `server` (ended ones included), drawn as their own
            /// blocks; none from an agent too old to have maintenance (protocol before 1.4).
            bookings::maintenance(server: String) -> Vec<Maintenance>;
            /// Takes GPUs (UUIDs or indices; all of the server when absent) of `server` out of
            /// service from `start` to `end` for `reason` (admins; a user is refused with
            /// `not_allowed`). The answer lists the bookings it moved or cancelled.
            bookings::create_maintenance(server: String, gpus: Option<Vec<String>>, start: DateTime<Utc>, end: DateTime<Utc>, reason: String) -> MaintenanceResponse;
            /// Books on `server`.
            bookings::book(server: String, request: BookRequest) -> BookingResponse;
            /// Books "as soon as possible" on the connected server where it would start soonest.
            bookings::asap_any(request: BookRequest) -> AsapAnyResponse;
            /// Cancels booking `id`.
            bookings::cancel(server: String, id: u64) -> BookingResponse;
            /// Extends booking `id` to `to`.
            bookings::extend(server: String, id: u64, to: DateTime<Utc>) -> BookingResponse;
            /// Moves booking `id` to `start..end`.
            bookings::move_booking(server: String, id: u64, start: DateTime<Utc>, end: DateTime<Utc>) -> BookingResponse;
            /// Releases the rest of booking `id`'s slot.
            bookings::release(server: String, id: u64) -> BookingResponse;
            /// Approves booking `id` (admins) as it was at revision `rev`, the one the panel showed.
            bookings::approve(server: String, id: u64, rev: Option<u32>) -> BookingResponse;
            /// Denies booking `id` (admins) as it was at revision `rev`.
            bookings::deny(server: String, id: u64, reason: Option<String>, rev: Option<u32>) -> BookingResponse;
            /// The log of booking `id`'s job from byte `offset` on (the start when absent), so an
            /// open panel fetches only what was added since. `follow`: true has the rest pushed as
            /// `log` events as the job writes it (where the server `follows_logs`), false stops that.
            jobs::job_logs(server: String, id: u64, offset: Option<u64>, follow: Option<bool>) -> LogsResponse;
            /// How long to book `command` on `server` with `gpus` GPUs: the server's suggestion from
            /// the person's own past runs of it there (`length_secs` absent, and `says` why, when
            /// there is nothing to go by or the server's agent is too old to suggest). `stage`: what
            /// the booking will stage (`name → source`), counted by the agent as the person so the
            /// suggestion scales with the data's size, read with the `s3` credentials named.
            jobs::suggest_length(server: String, command: String, gpus: u32, stage: Option<BTreeMap<String, String>>, s3: Option<S3Access>) -> SuggestionResponse;
            /// Booking `id`'s GPU utilisation and memory over its slot, as the agent kept them (its
            /// owner and admins; anyone else rejects with `not_allowed`). An agent too old to keep
            /// them rejects with `unknown_request`.
            usage::usage_series(server: String, id: u64) -> UsageSeriesResponse;
            /// The person's own e-mail and webhook targets on `server` (news the agent sends
            /// itself while the app is closed), how their latest deliveries went, and whether the
            /// server can send mail. Refused with `incompatible` by an agent before protocol 1.4.
            away::notify_show(server: String) -> NotifyResponse;
            /// Replaces the person's targets on `server` with `targets` (at most 4, each with at
            /// least one kind of event); a bad address or URL is refused with `invalid` and
            /// nothing changes. Answers the targets as the agent keeps them.
            away::notify_set(server: String, targets: Vec<NotifyTarget>) -> NotifyResponse;
            /// Removes the person's targets on `server`; deliveries not yet made are dropped.
            away::notify_clear(server: String) -> NotifyResponse;
            /// GPU-hours booked, used, idle-held and released early per user and per GPU on
            /// `server` over `from..to` (at most 366 days): everyone's for an admin, the
            /// person's own line otherwise. Refused with `incompatible` before protocol 1.3.
            away::report(server: String, from: DateTime<Utc>, to: DateTime<Utc>) -> ReportResponse;
            /// The settings.
            settings::settings() -> Settings;
            /// Saves the settings.
            settings::set_settings(settings: Settings) -> ();
            /// The .ics text of the person's bookings (`mine`) or of all, on every connected server.
            calendar::export_ics(mine: bool) -> String;
            /// Saves the .ics into the Downloads folder and answers its path (WebKitGTK offers no
            /// download of a blob URL by itself).
            calendar::save_ics(mine: bool) -> String;
            /// The URL a calendar app can subscribe to (the person's bookings on every server).
            calendar::feed_url() -> String;
            /// The CalDAV sync's status; from then on its changes are pushed as `caldav` events.
            calendar::caldav_status() -> CaldavStatus;
            /// Signs in to a CalDAV account: checks it, keeps the password in the OS keyring only
            /// if `remember`, saves the account (never the password) and syncs in the background.
            calendar::caldav_login(url: String, user: String, all_url: Option<String>, password: String, remember: bool) -> CaldavStatus;
            /// The person's calendars at the CalDAV server `url` (its address, e.g.
            /// cloud.example.org), to choose one for `caldav_login`; nothing is stored.
            calendar::caldav_discover(url: String, user: String, password: String) -> CaldavCalendars;
            /// A calendar for the bookings called `name` at the CalDAV server `url`: the one of
            /// that name, or a new one (MKCALENDAR); nothing is stored.
            calendar::caldav_create_calendar(url: String, user: String, password: String, name: String) -> CaldavCalendar;
            /// Signs out: the sync stops, the account and its keyring entry are removed.
            calendar::caldav_logout() -> ();
        }
    };
}

/// Calls `$callback!` with the declaration of every event the app pushes (see declare.rs).
#[macro_export]
macro_rules! with_app_events {
    ($callback:ident) => {
        $callback! {
            /// A server's state changed.
            Server = "gpubook://server" => ServerView;
            /// An agent's event (a booking changed).
            Event = "gpubook://event" => EventPayload;
            /// A server's live GPU readings.
            Readings = "gpubook://readings" => ReadingsPayload;
            /// More of a followed job's log.
            Log = "gpubook://log" => LogPayload;
            /// The CalDAV sync's status changed.
            Caldav = "gpubook://caldav" => CaldavStatus;
        }
    };
}
