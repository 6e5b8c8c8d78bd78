// The CalDAV account of the settings page: signing in through the contract's caldav_login
// (docs/app-contract.md) with what the person typed, and the words the page shows for a status.
import type { Api } from './api';
import type { CaldavStatus } from './app-types';
import { formatDuration } from './time';

/** What a person types to sign in. */
export interface CaldavLogin {
  url: string;
  user: string;
  allUrl: string | null;
  password: string;
  /** Keep the password in the OS keyring (consent). */
  remember: boolean;
}

/** Checks the account and starts syncing; rejects with an AppError (nothing stored). */
export function caldavLogin(api: Api, l: CaldavLogin): Promise<CaldavStatus> {
  const allUrl = l.allUrl?.trim() ? l.allUrl.trim() : null;
  return api.caldavLogin(l.url.trim(), l.user.trim(), allUrl, l.password, l.remember);
}

/** "just now", "3m ago", "2h 5m ago" (durations as everywhere: formatDuration), or the date. */
export function ago(iso: string, now: number): string {
  const ms = Math.max(0, now - Date.parse(iso));
  if (ms < 60_000) return 'just now';
  if (ms < 86_400_000) return `${formatDuration(ms)} ago`;
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
