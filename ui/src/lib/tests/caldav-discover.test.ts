import { describe, expect, it } from 'vitest';
import { NEW_CALENDAR, caldavCreateCalendar, caldavDiscover } from '../caldav-discover';
import { makeApi, type Host } from '../api';
import { MockBackend } from '../mock';

function recorder(answer: unknown) {
  const calls: [string, unknown][] = [];
  const host: Host = {
    mock: true,
    invoke: async (cmd, args) => {
      calls.push([cmd, args]);
      return answer as never;
    },
    listen: async () => () => {},
  };
  return { api: makeApi(host), calls };
}

describe('caldav discovery calls', () => {
  it('sends the address, user and password, trimmed, to caldav_discover', async () => {
    const found = { home: 'https://h/alice/', calendars: [{ url: 'https://h/alice/a/', name: 'a', events: true }] };
    const { api, calls } = recorder(found);
    expect(await caldavDiscover(api, ' cloud.example.org ', ' alice ', ' pw ')).toEqual(found);
    expect(calls).toEqual([['caldav_discover', { url: 'cloud.example.org', user: 'alice', password: ' pw ' }]]);
  });
  it('asks caldav_create_calendar for the bookings calendar by name', async () => {
    const made = { url: 'https://h/alice/gpu-bookings/', name: NEW_CALENDAR, events: true };
    const { api, calls } = recorder(made);
    expect(await caldavCreateCalendar(api, 'h', 'alice', 'pw', NEW_CALENDAR)).toEqual(made);
    expect(calls).toEqual([['caldav_create_calendar', { url: 'h', user: 'alice', password: 'pw', name: 'GPU bookings' }]]);
  });
  it('the mock lists a made calendar once, however often it is made', async () => {
    const api = makeApi(new MockBackend());
    const made = await caldavCreateCalendar(api, 'cloud.example.org', 'alice', 'pw', NEW_CALENDAR);
    await caldavCreateCalendar(api, 'cloud.example.org', 'alice', 'pw', NEW_CALENDAR);
    const found = await caldavDiscover(api, 'cloud.example.org', 'alice', 'pw');
    expect(found.calendars.filter((c) => c.url === made.url)).toHaveLength(1);
    await expect(caldavDiscover(api, 'cloud.example.org', 'alice', 'wrong')).rejects.toMatchObject({ kind: 'auth' });
  });
});
