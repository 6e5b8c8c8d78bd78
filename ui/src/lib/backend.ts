// The one door to the Rust side: invoke() and listen() of Tauri 2, or, in a plain browser
// (no window.__TAURI_INTERNALS__), the in-memory mock agent. The mock is never used in Tauri.
// Components do not call these: they call the typed `app.api` (api.ts, generated from the
// contract's declaration; docs/app-contract.md).
import type { AppError } from './app-types';
import type { Host } from './api';

/** What the app needs of its host: the contract's Host (api.ts, generated). */
export type Backend = Host;

/** Whether the page runs inside Tauri. */
export function inTauri(): boolean {
  return typeof window !== 'undefined' && '__TAURI_INTERNALS__' in window;
}

async function tauriBackend(): Promise<Backend> {
  const core = await import('@tauri-apps/api/core');
  const event = await import('@tauri-apps/api/event');
  return {
    mock: false,
    invoke: (cmd, args) => core.invoke(cmd, args),
    listen: async (name, cb) => {
      const un = await event.listen<Parameters<typeof cb>[0]>(name, (e) => cb(e.payload));
      return un;
    },
  };
}

/** The backend for this page. */
export async function connectBackend(): Promise<Backend> {
  if (inTauri()) return tauriBackend();
  const { MockBackend } = await import('./mock');
  return new MockBackend();
}

/** Any rejection as an AppError with a sentence in it. */
export function toAppError(e: unknown): AppError {
  if (e && typeof e === 'object' && 'kind' in e && 'message' in e) {
    const o = e as Partial<AppError>;
    return {
      kind: (o.kind ?? 'internal') as AppError['kind'],
      message: String(o.message ?? 'Something went wrong.'),
      server: o.server ?? null,
      conflicts: o.conflicts ?? [],
      fingerprint: o.fingerprint ?? null,
      revision: o.revision ?? null,
    };
  }
  const message = e instanceof Error ? e.message : typeof e === 'string' ? e : 'Something went wrong.';
  return { kind: 'internal', message, server: null, conflicts: [], fingerprint: null, revision: null };
}
