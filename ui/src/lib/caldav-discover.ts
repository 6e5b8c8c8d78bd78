// Finding a CalDAV calendar from the server's address, for the settings page: invoke wrappers
// for caldav_discover and caldav_create_calendar (crates/desktop/src/caldav_discover.rs).
// The chosen calendar's URL then goes to caldav_login.
import type { Backend } from './backend';

/** One of the person's calendars (Rust: CaldavCalendar). */
export interface CaldavCalendar {
  url: string;
  name: string;
  /** Whether it takes events: only those can hold the bookings. */
  events: boolean;
}

/** The person's calendars at a server (Rust: CaldavCalendars). */
export interface CaldavCalendars {
  home: string;
  calendars: CaldavCalendar[];
}

/** The name a new calendar for the bookings gets. */
export const NEW_CALENDAR = 'GPU bookings';

/** The calendars of `user` at the server `url` (its address); rejects with an AppError. */
export function caldavDiscover(b: Backend, url: string, user: string, password: string): Promise<CaldavCalendars> {
  return b.invoke<CaldavCalendars>('caldav_discover', { url: url.trim(), user: user.trim(), password });
}

/** The calendar called `name` at the server `url`, made when there is none. */
export function caldavCreateCalendar(
  b: Backend,
  url: string,
  user: string,
  password: string,
  name: string,
): Promise<CaldavCalendar> {
  return b.invoke<CaldavCalendar>('caldav_create_calendar', { url: url.trim(), user: user.trim(), password, name });
}
