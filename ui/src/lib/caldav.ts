// The CalDAV account of the settings page: invoke wrappers for caldav_status, caldav_login and
// caldav_logout (see /work/notes/ipc.md), the pushed "gpubook://caldav" status, and the words
// the page shows for a status.
import type { Backend } from './backend';
import type { CaldavStatus } from './app-types';

/** The event that carries every change of the status. */
export const CALDAV_EVENT = 'gpubook://caldav';

/** What a person types to sign in. */
export interface CaldavLogin {
  url: string;
  user: string;
  allUrl: string | null;
  password: string;
  /** Keep the password in the OS keyring (consent). */
  remember: boolean;
}

/** The status now; the backend pushes its changes from then on. */
export function caldavStatus(b: Backend): Promise<CaldavStatus> {
  return b.invoke<CaldavStatus>('caldav_status');
}

/** Checks the account and starts syncing; rejects with an AppError (nothing stored). */
export function caldavLogin(b: Backend, l: CaldavLogin): Promise<CaldavStatus> {
  const allUrl = l.allUrl?.trim() ? l.allUrl.trim() : null;
  return b.invoke<CaldavStatus>('caldav_login', {
    url: l.url.trim(),
    user: l.user.trim(),
    allUrl,
    password: l.password,
    remember: l.remember,
  });
}

/** Stops syncing, removes the account and its keyring entry. */
export function caldavLogout(b: Backend): Promise<void> {
  return b.invoke<void>('caldav_logout');
}

/** "just now", "3 min ago", "2 h ago", or the date, for the last sync. */
export function ago(iso: string, now: number): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleString();
}

/** One line for the status: what the page shows next to the account. */
export function describe(s: CaldavStatus, now: number): string {
  const last = s.last_sync ? `last sync ${ago(s.last_sync, now)}` : 'not synced yet';
  const pending = s.pending > 0 ? `; ${s.pending} change${s.pending === 1 ? '' : 's'} waiting` : '';
  switch (s.state) {
    case 'off':
      return 'Not signed in.';
    case 'syncing':
      return `Syncing… (${last}${pending})`;
    case 'ok':
      return `In sync (${last}${pending}).`;
    case 'error':
      return `${s.error ?? 'The sync stopped.'} (${last}${pending})`;
  }
}
