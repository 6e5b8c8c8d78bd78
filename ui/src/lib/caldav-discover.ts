// Finding a CalDAV calendar from the server's address, for the settings page, through the
// contract's caldav_discover and caldav_create_calendar (crates/desktop/src/caldav_discover.rs).
// The chosen calendar's URL then goes to caldav_login.
import type { Api } from './api';
import type { CaldavCalendar } from './app/CaldavCalendar';
import type { CaldavCalendars } from './app/CaldavCalendars';

export type { CaldavCalendar, CaldavCalendars };

/** The name a new calendar for the bookings gets. */
export const NEW_CALENDAR = 'GPU bookings';

/** The calendars of `user` at the server `url` (its address); rejects with an AppError. */
export function caldavDiscover(api: Api, url: string, user: string, password: string): Promise<CaldavCalendars> {
  return api.caldavDiscover(url.trim(), user.trim(), password);
}

/** The calendar called `name` at the server `url`, made when there is none. */
export function caldavCreateCalendar(
  api: Api,
  url: string,
  user: string,
  password: string,
  name: string,
): Promise<CaldavCalendar> {
  return api.caldavCreateCalendar(url.trim(), user.trim(), password, name);
}
