// App-only IPC types: the ones app-rust generates from crates/desktop into ./app/ (ts-rs).
export type { AppError } from './app/AppError';
export type { ServerView } from './app/ServerView';
export type { Settings } from './app/Settings';
export type { EventPayload } from './app/EventPayload';
export type { ReadingsPayload } from './app/ReadingsPayload';
export type { AsapAnyResponse } from './app/AsapAnyResponse';

// The CalDAV account (crates/desktop/src/caldav.rs), declared by hand with exactly the Rust
// shapes until ts_bindings.rs exports them (see /work/notes/requests-app-caldav.md).
/** A CalDAV account as the settings keep it (never with its password). */
export type CaldavAccount = { url: string; user: string; all_url: string | null };
/** Where the sync stands. */
export type CaldavState = 'off' | 'syncing' | 'ok' | 'error';
/** caldav_status(), caldav_login() and the "gpubook://caldav" event. */
export type CaldavStatus = {
  account: CaldavAccount | null;
  state: CaldavState;
  /** ISO UTC of the last change sent or full sync. */
  last_sync: string | null;
  /** Changes waiting to be sent. */
  pending: number;
  /** What is wrong, as a sentence. */
  error: string | null;
  /** The password must be typed again (refused, or not in the keyring). */
  needs_password: boolean;
};
