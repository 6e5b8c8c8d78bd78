// App-only IPC types, declared by hand with exactly the shapes of /work/notes/ipc.md until
// app-rust generates them into ./app/ (then these re-export the generated ones).
import type { Conflict } from './wire/Conflict';
import type { ErrorKind } from './wire/ErrorKind';
import type { Role } from './wire/Role';
import type { Event } from './wire/Event';
import type { Readings } from './wire/Readings';

/** A server as the app sees it. */
export type ServerView = {
  id: string;
  name: string;
  state: 'connecting' | 'connected' | 'unreachable';
  detail: string | null;
  user: string | null;
  role: Role | null;
  simulated: boolean;
};

/** What every command rejects with. */
export type AppError = {
  kind: ErrorKind | 'unreachable' | 'host_key_unknown' | 'host_key_changed' | 'auth' | 'internal';
  message: string;
  server: string | null;
  conflicts: Conflict[];
  fingerprint: string | null;
};

/** The app's settings. */
export type Settings = {
  notify: Record<string, boolean>;
  show_own_command_in_calendar: boolean;
};

/** Payload of "gpubook://event". */
export type EventPayload = { server: string; event: Event };
/** Payload of "gpubook://readings". */
export type ReadingsPayload = { server: string; readings: Readings };
