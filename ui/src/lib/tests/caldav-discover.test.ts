import { describe, expect, it } from 'vitest';
import { NEW_CALENDAR, caldavCreateCalendar, caldavDiscover } from '../caldav-discover';
import type { Backend } from '../backend';

function recorder(answer: unknown) {
  const calls: [string, Record<string, unknown> | undefined][] = [];
  const b: Backend = {
    mock: true,
    invoke: async <T>(cmd: string, args?: Record<string, unknown>) => {
      calls.push([cmd, args]);
      return answer as T;
    },
    listen: async () => () => {},
  };
  return { b, calls };
}

describe('caldav discovery calls', () => {
  it('sends the address, user and password, trimmed, to caldav_discover', async () => {
    const found = { home: 'https://h/alice/', calendars: [{ url: 'https://h/alice/a/', name: 'a', events: true }] };
    const { b, calls } = recorder(found);
    expect(await caldavDiscover(b, ' cloud.example.org ', ' alice ', ' pw ')).toEqual(found);
    expect(calls).toEqual([['caldav_discover', { url: 'cloud.example.org', user: 'alice', password: ' pw ' }]]);
  });
  it('asks caldav_create_calendar for the bookings calendar by name', async () => {
    const made = { url: 'https://h/alice/gpu-bookings/', name: NEW_CALENDAR, events: true };
    const { b, calls } = recorder(made);
    expect(await caldavCreateCalendar(b, 'h', 'alice', 'pw', NEW_CALENDAR)).toEqual(made);
    expect(calls).toEqual([['caldav_create_calendar', { url: 'h', user: 'alice', password: 'pw', name: 'GPU bookings' }]]);
  });
});
