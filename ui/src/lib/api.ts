// Generated from crates/desktop/src/contract/declare.rs by
// `cargo test -p gpubook-desktop --features ts`: do not edit. The app's contract with
// its Rust side, explained in docs/app-contract.md. Components call `app.api.x(...)`.
import type { AsapAnyResponse } from './app/AsapAnyResponse';
import type { BookRequest } from './wire/BookRequest';
import type { Booking } from './wire/Booking';
import type { BookingResponse } from './wire/BookingResponse';
import type { CaldavCalendar } from './app/CaldavCalendar';
import type { CaldavCalendars } from './app/CaldavCalendars';
import type { CaldavStatus } from './app/CaldavStatus';
import type { EventPayload } from './app/EventPayload';
import type { GpusResponse } from './wire/GpusResponse';
import type { LogPayload } from './app/LogPayload';
import type { LogsResponse } from './wire/LogsResponse';
import type { Maintenance } from './wire/Maintenance';
import type { MaintenanceResponse } from './wire/MaintenanceResponse';
import type { NotifyResponse } from './wire/NotifyResponse';
import type { NotifyTarget } from './wire/NotifyTarget';
import type { PolicyResponse } from './wire/PolicyResponse';
import type { ReadingsPayload } from './app/ReadingsPayload';
import type { ReportResponse } from './wire/ReportResponse';
import type { S3Access } from './wire/S3Access';
import type { ServerView } from './app/ServerView';
import type { Settings } from './app/Settings';
import type { SuggestionResponse } from './wire/SuggestionResponse';
import type { UsageSeriesResponse } from './wire/UsageSeriesResponse';

/** The arguments of each command, as they travel (camelCase keys). */
export interface CommandArgs {
  servers: Record<string, never>;
  add_server: { spec: string; secret?: string | null; remember?: boolean | null };
  accept_host_key: { spec: string; fingerprint: string; secret?: string | null; remember?: boolean | null };
  remove_server: { id: string };
  ssh_hosts: Record<string, never>;
  sign_in: { id: string; secret?: string | null; remember?: boolean | null };
  gpus: { server: string };
  bookings: { server: string; from: string; to: string };
  policy: { server: string };
  maintenance: { server: string };
  create_maintenance: { server: string; gpus?: Array<string> | null; start: string; end: string; reason: string };
  book: { server: string; request: BookRequest };
  asap_any: { request: BookRequest };
  cancel: { server: string; id: number };
  extend: { server: string; id: number; to: string };
  move_booking: { server: string; id: number; start: string; end: string };
  release: { server: string; id: number };
  approve: { server: string; id: number; rev?: number | null };
  deny: { server: string; id: number; reason?: string | null; rev?: number | null };
  job_logs: { server: string; id: number; offset?: number | null; follow?: boolean | null };
  suggest_length: { server: string; command: string; gpus: number; stage?: { [key in string]: string } | null; s3?: S3Access | null };
  usage_series: { server: string; id: number };
  notify_show: { server: string };
  notify_set: { server: string; targets: Array<NotifyTarget> };
  notify_clear: { server: string };
  report: { server: string; from: string; to: string };
  settings: Record<string, never>;
  set_settings: { settings: Settings };
  export_ics: { mine: boolean };
  save_ics: { mine: boolean };
  feed_url: Record<string, never>;
  caldav_status: Record<string, never>;
  caldav_login: { url: string; user: string; allUrl?: string | null; password: string; remember: boolean };
  caldav_discover: { url: string; user: string; password: string };
  caldav_create_calendar: { url: string; user: string; password: string; name: string };
  caldav_logout: Record<string, never>;
}

/** What each command answers (each may reject with an AppError). */
export interface CommandResults {
  servers: Array<ServerView>;
  add_server: ServerView;
  accept_host_key: ServerView;
  remove_server: null;
  ssh_hosts: Array<string>;
  sign_in: ServerView;
  gpus: GpusResponse;
  bookings: Array<Booking>;
  policy: PolicyResponse;
  maintenance: Array<Maintenance>;
  create_maintenance: MaintenanceResponse;
  book: BookingResponse;
  asap_any: AsapAnyResponse;
  cancel: BookingResponse;
  extend: BookingResponse;
  move_booking: BookingResponse;
  release: BookingResponse;
  approve: BookingResponse;
  deny: BookingResponse;
  job_logs: LogsResponse;
  suggest_length: SuggestionResponse;
  usage_series: UsageSeriesResponse;
  notify_show: NotifyResponse;
  notify_set: NotifyResponse;
  notify_clear: NotifyResponse;
  report: ReportResponse;
  settings: Settings;
  set_settings: null;
  export_ics: string;
  save_ics: string;
  feed_url: string;
  caldav_status: CaldavStatus;
  caldav_login: CaldavStatus;
  caldav_discover: CaldavCalendars;
  caldav_create_calendar: CaldavCalendar;
  caldav_logout: null;
}

/** A command's name. */
export type Command = keyof CommandArgs;

/** The payload of each event the app pushes, by the event's name. */
export interface EventPayloads {
  'gpubook://server': ServerView;
  'gpubook://event': EventPayload;
  'gpubook://readings': ReadingsPayload;
  'gpubook://log': LogPayload;
  'gpubook://caldav': CaldavStatus;
}

/** An event's name. */
export type EventName = keyof EventPayloads;

/** What the app needs of its host: Tauri (backend.ts), or the in-memory mock (mock.ts). */
export interface Host {
  /** Calls a command; rejects with an AppError. */
  invoke<C extends Command>(cmd: C, args: CommandArgs[C]): Promise<CommandResults[C]>;
  /** Listens to an event; resolves to the function that stops listening. */
  listen<E extends EventName>(event: E, cb: (payload: EventPayloads[E]) => void): Promise<() => void>;
  /** True for the in-memory mock. */
  readonly mock: boolean;
}

/** A handler per command: what the mock implements, so a command it lacks does not compile. */
export type Handlers = {
  [C in Command]: (args: CommandArgs[C]) => CommandResults[C] | Promise<CommandResults[C]>;
};

/** Every command as a typed call, and a listener per event. */
export interface Api {
  /** Every server with its state. */
  servers(): Promise<Array<ServerView>>;
  /**
   * Adds a server: an alias from ~/.ssh/config, user@host[:port], or unix:PATH. An
   * unknown host key rejects with `host_key_unknown` and its fingerprint; a login that
   * needs a password or passphrase rejects with `auth`, and the UI asks again with
   * `secret` (kept in memory for this run, in the OS keyring only if `remember`).
   */
  addServer(spec: string, secret?: string | null, remember?: boolean | null): Promise<ServerView>;
  /** Adds a server after the person accepted its host key `fingerprint`. */
  acceptHostKey(spec: string, fingerprint: string, secret?: string | null, remember?: boolean | null): Promise<ServerView>;
  /** Removes a server from the app and the person's list. */
  removeServer(id: string): Promise<null>;
  /** The Hosts of the person's ~/.ssh/config (and its Includes) that "Add server" offers. */
  sshHosts(): Promise<Array<string>>;
  /**
   * Signs in to a server of the list whose login was refused, with the password or key
   * passphrase the person typed (kept in the OS keyring only if `remember`).
   */
  signIn(id: string, secret?: string | null, remember?: boolean | null): Promise<ServerView>;
  /** The GPUs of `server`. */
  gpus(server: string): Promise<GpusResponse>;
  /** The bookings of `server` overlapping `from..to`. */
  bookings(server: string, from: string, to: string): Promise<Array<Booking>>;
  /** The policy of `server` and the person's role there. */
  policy(server: string): Promise<PolicyResponse>;
  /**
   * The maintenance periods of `server` (ended ones included), drawn as their own
   * blocks; none from an agent too old to have maintenance (protocol before 1.4).
   */
  maintenance(server: string): Promise<Array<Maintenance>>;
  /**
   * Takes GPUs (UUIDs or indices; all of the server when absent) of `server` out of
   * service from `start` to `end` for `reason` (admins; a user is refused with
   * `not_allowed`). The answer lists the bookings it moved or cancelled.
   */
  createMaintenance(server: string, gpus: Array<string> | null, start: string, end: string, reason: string): Promise<MaintenanceResponse>;
  /** Books on `server`. */
  book(server: string, request: BookRequest): Promise<BookingResponse>;
  /** Books "as soon as possible" on the connected server where it would start soonest. */
  asapAny(request: BookRequest): Promise<AsapAnyResponse>;
  /** Cancels booking `id`. */
  cancel(server: string, id: number): Promise<BookingResponse>;
  /** Extends booking `id` to `to`. */
  extend(server: string, id: number, to: string): Promise<BookingResponse>;
  /** Moves booking `id` to `start..end`. */
  moveBooking(server: string, id: number, start: string, end: string): Promise<BookingResponse>;
  /** Releases the rest of booking `id`'s slot. */
  release(server: string, id: number): Promise<BookingResponse>;
  /** Approves booking `id` (admins) as it was at revision `rev`, the one the panel showed. */
  approve(server: string, id: number, rev?: number | null): Promise<BookingResponse>;
  /** Denies booking `id` (admins) as it was at revision `rev`. */
  deny(server: string, id: number, reason?: string | null, rev?: number | null): Promise<BookingResponse>;
  /**
   * The log of booking `id`'s job from byte `offset` on (the start when absent), so an
   * open panel fetches only what was added since. `follow`: true has the rest pushed as
   * `log` events as the job writes it (where the server `follows_logs`), false stops that.
   */
  jobLogs(server: string, id: number, offset?: number | null, follow?: boolean | null): Promise<LogsResponse>;
  /**
   * How long to book `command` on `server` with `gpus` GPUs: the server's suggestion from
   * the person's own past runs of it there (`length_secs` absent, and `says` why, when
   * there is nothing to go by or the server's agent is too old to suggest). `stage`: what
   * the booking will stage (`name → source`), counted by the agent as the person so the
   * suggestion scales with the data's size, read with the `s3` credentials named.
   */
  suggestLength(server: string, command: string, gpus: number, stage?: { [key in string]: string } | null, s3?: S3Access | null): Promise<SuggestionResponse>;
  /**
   * Booking `id`'s GPU utilisation and memory over its slot, as the agent kept them (its
   * owner and admins; anyone else rejects with `not_allowed`). An agent too old to keep
   * them rejects with `unknown_request`.
   */
  usageSeries(server: string, id: number): Promise<UsageSeriesResponse>;
  /**
   * The person's own e-mail and webhook targets on `server` (news the agent sends
   * itself while the app is closed), how their latest deliveries went, and whether the
   * server can send mail. Refused with `incompatible` by an agent before protocol 1.4.
   */
  notifyShow(server: string): Promise<NotifyResponse>;
  /**
   * Replaces the person's targets on `server` with `targets` (at most 4, each with at
   * least one kind of event); a bad address or URL is refused with `invalid` and
   * nothing changes. Answers the targets as the agent keeps them.
   */
  notifySet(server: string, targets: Array<NotifyTarget>): Promise<NotifyResponse>;
  /** Removes the person's targets on `server`; deliveries not yet made are dropped. */
  notifyClear(server: string): Promise<NotifyResponse>;
  /**
   * GPU-hours booked, used, idle-held and released early per user and per GPU on
   * `server` over `from..to` (at most 366 days): everyone's for an admin, the
   * person's own line otherwise. Refused with `incompatible` before protocol 1.3.
   */
  report(server: string, from: string, to: string): Promise<ReportResponse>;
  /** The settings. */
  settings(): Promise<Settings>;
  /** Saves the settings. */
  setSettings(settings: Settings): Promise<null>;
  /** The .ics text of the person's bookings (`mine`) or of all, on every connected server. */
  exportIcs(mine: boolean): Promise<string>;
  /**
   * Saves the .ics into the Downloads folder and answers its path (WebKitGTK offers no
   * download of a blob URL by itself).
   */
  saveIcs(mine: boolean): Promise<string>;
  /** The URL a calendar app can subscribe to (the person's bookings on every server). */
  feedUrl(): Promise<string>;
  /** The CalDAV sync's status; from then on its changes are pushed as `caldav` events. */
  caldavStatus(): Promise<CaldavStatus>;
  /**
   * Signs in to a CalDAV account: checks it, keeps the password in the OS keyring only
   * if `remember`, saves the account (never the password) and syncs in the background.
   */
  caldavLogin(url: string, user: string, allUrl: string | null, password: string, remember: boolean): Promise<CaldavStatus>;
  /**
   * The person's calendars at the CalDAV server `url` (its address, e.g.
   * cloud.example.org), to choose one for `caldav_login`; nothing is stored.
   */
  caldavDiscover(url: string, user: string, password: string): Promise<CaldavCalendars>;
  /**
   * A calendar for the bookings called `name` at the CalDAV server `url`: the one of
   * that name, or a new one (MKCALENDAR); nothing is stored.
   */
  caldavCreateCalendar(url: string, user: string, password: string, name: string): Promise<CaldavCalendar>;
  /** Signs out: the sync stops, the account and its keyring entry are removed. */
  caldavLogout(): Promise<null>;
  /** A server's state changed. */
  onServer(cb: (payload: ServerView) => void): Promise<() => void>;
  /** An agent's event (a booking changed). */
  onEvent(cb: (payload: EventPayload) => void): Promise<() => void>;
  /** A server's live GPU readings. */
  onReadings(cb: (payload: ReadingsPayload) => void): Promise<() => void>;
  /** More of a followed job's log. */
  onLog(cb: (payload: LogPayload) => void): Promise<() => void>;
  /** The CalDAV sync's status changed. */
  onCaldav(cb: (payload: CaldavStatus) => void): Promise<() => void>;
}

/** The typed calls over `host`. */
export function makeApi(host: Host): Api {
  return {
    servers: () => host.invoke('servers', {}),
    addServer: (spec, secret, remember) => host.invoke('add_server', { spec, secret, remember }),
    acceptHostKey: (spec, fingerprint, secret, remember) => host.invoke('accept_host_key', { spec, fingerprint, secret, remember }),
    removeServer: (id) => host.invoke('remove_server', { id }),
    sshHosts: () => host.invoke('ssh_hosts', {}),
    signIn: (id, secret, remember) => host.invoke('sign_in', { id, secret, remember }),
    gpus: (server) => host.invoke('gpus', { server }),
    bookings: (server, from, to) => host.invoke('bookings', { server, from, to }),
    policy: (server) => host.invoke('policy', { server }),
    maintenance: (server) => host.invoke('maintenance', { server }),
    createMaintenance: (server, gpus, start, end, reason) => host.invoke('create_maintenance', { server, gpus, start, end, reason }),
    book: (server, request) => host.invoke('book', { server, request }),
    asapAny: (request) => host.invoke('asap_any', { request }),
    cancel: (server, id) => host.invoke('cancel', { server, id }),
    extend: (server, id, to) => host.invoke('extend', { server, id, to }),
    moveBooking: (server, id, start, end) => host.invoke('move_booking', { server, id, start, end }),
    release: (server, id) => host.invoke('release', { server, id }),
    approve: (server, id, rev) => host.invoke('approve', { server, id, rev }),
    deny: (server, id, reason, rev) => host.invoke('deny', { server, id, reason, rev }),
    jobLogs: (server, id, offset, follow) => host.invoke('job_logs', { server, id, offset, follow }),
    suggestLength: (server, command, gpus, stage, s3) => host.invoke('suggest_length', { server, command, gpus, stage, s3 }),
    usageSeries: (server, id) => host.invoke('usage_series', { server, id }),
    notifyShow: (server) => host.invoke('notify_show', { server }),
    notifySet: (server, targets) => host.invoke('notify_set', { server, targets }),
    notifyClear: (server) => host.invoke('notify_clear', { server }),
    report: (server, from, to) => host.invoke('report', { server, from, to }),
    settings: () => host.invoke('settings', {}),
    setSettings: (settings) => host.invoke('set_settings', { settings }),
    exportIcs: (mine) => host.invoke('export_ics', { mine }),
    saveIcs: (mine) => host.invoke('save_ics', { mine }),
    feedUrl: () => host.invoke('feed_url', {}),
    caldavStatus: () => host.invoke('caldav_status', {}),
    caldavLogin: (url, user, allUrl, password, remember) => host.invoke('caldav_login', { url, user, allUrl, password, remember }),
    caldavDiscover: (url, user, password) => host.invoke('caldav_discover', { url, user, password }),
    caldavCreateCalendar: (url, user, password, name) => host.invoke('caldav_create_calendar', { url, user, password, name }),
    caldavLogout: () => host.invoke('caldav_logout', {}),
    onServer: (cb) => host.listen('gpubook://server', cb),
    onEvent: (cb) => host.listen('gpubook://event', cb),
    onReadings: (cb) => host.listen('gpubook://readings', cb),
    onLog: (cb) => host.listen('gpubook://log', cb),
    onCaldav: (cb) => host.listen('gpubook://caldav', cb),
  };
}
