import { describe as group, expect, it } from 'vitest';
import { ago, caldavLogin, describe } from '../caldav';
import type { CaldavStatus } from '../app-types';
import { makeApi, type Host } from '../api';

const now = Date.parse('2026-11-26T14:00:00Z');
const base: CaldavStatus = {
  account: { url: 'https://dav.example.org/alice/gpu/', user: 'alice', all_url: null },
  state: 'ok',
  last_sync: '2026-11-26T13:57:00Z',
  pending: 0,
  error: null,
  needs_password: false,
};

group('caldav status words', () => {
  it('says when it last synced', () => {
    expect(ago('2026-11-26T13:59:50Z', now)).toBe('just now');
    expect(ago('2026-11-26T13:57:00Z', now)).toBe('3m ago');
    expect(ago('2026-11-26T11:00:00Z', now)).toBe('3h ago');
    expect(describe(base, now)).toBe('In sync (last sync 3m ago).');
  });
  it('shows the error sentence and what waits', () => {
    const s: CaldavStatus = { ...base, state: 'error', pending: 2, error: 'Cannot reach the CalDAV server.' };
    expect(describe(s, now)).toBe('Cannot reach the CalDAV server. (last sync 3m ago; 2 changes waiting)');
    expect(describe({ ...base, state: 'off', account: null }, now)).toBe('Not signed in.');
    expect(describe({ ...base, state: 'syncing', last_sync: null }, now)).toBe('Syncing… (not synced yet)');
  });
});

group('caldav_login arguments', () => {
  it('sends camelCase args, trimmed, with no all-URL when empty', async () => {
    const calls: [string, unknown][] = [];
    const host: Host = {
      mock: true,
      invoke: async (cmd, args) => {
        calls.push([cmd, args]);
        return base as never;
      },
      listen: async () => () => {},
    };
    await caldavLogin(makeApi(host), { url: ' https://x/ ', user: 'alice ', allUrl: '  ', password: ' p ', remember: false });
    expect(calls).toEqual([
      ['caldav_login', { url: 'https://x/', user: 'alice', allUrl: null, password: ' p ', remember: false }],
    ]);
  });
});
