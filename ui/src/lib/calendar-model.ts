// Pure mapping from the app's data to @event-calendar/core's resources and events.
import type { ServerView } from './app-types';
import type { Booking } from './wire/Booking';
import type { Gpu } from './wire/Gpu';
import type { Maintenance } from './wire/Maintenance';
import { colourFor } from './colors';
import { laneId, type Lane } from './selection';
import { stagedFraction, type Staging } from './bookings';

/** Extra data carried on each calendar event. */
export type BookingProps = {
  /** Set on a maintenance block (then `id` is the period's number and `owner` who made it). */
  maintenance?: { reason: string; fault: boolean; whole: boolean };
  /** Set on what holds GPUs outside gpubook (a Slurm job or reservation): drawn busy, never
   * opened or moved; `owner` is whose it is. */
  outside?: true;
  server: string;
  id: number;
  owner: string;
  state: string;
  own: boolean;
  asap: boolean;
  job: string | null;
  /** How far its data's copy before the slot is (0 to 1) while it runs; null otherwise. */
  staged: number | null;
  selection?: boolean;
};

/** A calendar resource: a server with its GPUs as children, or a GPU. */
export type Resource = {
  id: string;
  title: string;
  children?: Resource[];
  extendedProps: { server: string; gpu: Gpu | null };
};

/** Lanes in display order, one per GPU of the connected servers. */
export function lanesOf(servers: ServerView[], gpus: Record<string, Gpu[]>): Lane[] {
  const out: Lane[] = [];
  for (const s of servers) {
    for (const g of gpus[s.id] ?? []) out.push({ server: s.id, uuid: g.uuid, index: g.index });
  }
  return out;
}

/** Calendar resources: one group per server, one child per GPU. */
export function resourcesOf(servers: ServerView[], gpus: Record<string, Gpu[]>, nested = true): Resource[] {
  const out: Resource[] = [];
  for (const s of servers) {
    const list = gpus[s.id];
    if (!list) continue;
    const children: Resource[] = list.map((g) => ({
      id: laneId(s.id, g.uuid),
      title: `${s.name} · GPU ${g.index}`,
      extendedProps: { server: s.id, gpu: g },
    }));
    if (nested) {
      out.push({ id: `server:${s.id}`, title: s.name, children, extendedProps: { server: s.id, gpu: null } });
    } else {
      out.push(...children);
    }
  }
  return out;
}

/** The classes that make states look different at a glance. */
export function bookingClasses(b: Booking, own: boolean, now: number): string[] {
  const c = [`st-${b.state}`, own ? 'own' : 'other'];
  if (b.asap && b.state !== 'active' && b.state !== 'ended') c.push('asap');
  if (b.run && (b.run.state === 'running' || b.run.state === 'starting')) c.push('running');
  if (Date.parse(b.interval.end) <= now) c.push('past');
  return c;
}

/** Whether the person may drag a booking: their own, not over and not given back. */
export function draggable(b: Booking, own: boolean, now: number): boolean {
  return own && (b.state === 'confirmed' || b.state === 'pending_approval' || b.state === 'active') &&
    Date.parse(b.interval.end) > now;
}

/** One calendar event for a maintenance period: its own kind of block, never draggable. */
export function maintenanceEventOf(server: string, m: Maintenance, now: number) {
  const fault = m.cause === 'fault';
  const props: BookingProps = {
    server,
    id: m.id,
    owner: m.by,
    state: 'maintenance',
    own: false,
    asap: false,
    job: null,
    staged: null,
    maintenance: { reason: m.reason, fault, whole: m.whole_server },
  };
  const c = ['maintenance', fault ? 'fault' : 'planned'];
  if (Date.parse(m.interval.end) <= now) c.push('past');
  return {
    id: `${server}:m${m.id}`,
    resourceIds: m.gpus.map((u) => laneId(server, u)),
    start: new Date(m.interval.start),
    end: new Date(m.interval.end),
    title: fault ? `Out of service: ${m.reason}` : `Maintenance: ${m.reason}`,
    editable: false,
    startEditable: false,
    durationEditable: false,
    classNames: c,
    extendedProps: props,
  };
}

/** One calendar event for a booking (shown in each of its GPU lanes). */
export function eventOf(server: string, b: Booking, me: string | null, now: number, showCommand: boolean, staging?: Staging) {
  const own = me !== null && b.owner === me;
  const colour = own ? { background: 'var(--own-bg)', border: 'var(--own-border)', text: 'var(--own-text)' } : colourFor(b.owner);
  const props: BookingProps = {
    server,
    id: b.id,
    owner: b.owner,
    state: b.state,
    own,
    asap: !!b.asap,
    job: own && showCommand && b.job ? b.job.command : null,
    staged: staging && staging.state === 'copying' ? stagedFraction(staging) : null,
  };
  return {
    id: `${server}:${b.id}`,
    resourceIds: b.gpus.map((u) => laneId(server, u)),
    start: new Date(b.interval.start),
    end: new Date(b.interval.end),
    title: b.title,
    editable: draggable(b, own, now),
    startEditable: draggable(b, own, now) && b.state !== 'active',
    durationEditable: draggable(b, own, now),
    backgroundColor: colour.background,
    textColor: colour.text,
    classNames: bookingClasses(b, own, now),
    extendedProps: props,
  };
}

/** What a block's tooltip says: whose, what, which GPUs, when and where it is in its life. */
export type BlockDetails = { heading: string; lines: string[] };

const STATE_WORDS: Record<string, string> = {
  pending_approval: 'awaiting approval',
  confirmed: 'confirmed',
  active: 'on now',
  ended: 'ended',
  cancelled: 'cancelled',
  denied: 'denied',
};

/** The tooltip of booking `b` on `serverName`, whose GPUs are `gpus`, for person `me`. */
export function blockDetails(
  b: Booking,
  serverName: string,
  gpus: Gpu[],
  me: string | null,
  range: (start: number, end: number) => string,
): BlockDetails {
  const idx = b.gpus
    .map((u) => gpus.find((g) => g.uuid === u)?.index)
    .filter((i): i is number => i !== undefined)
    .sort((a, c) => a - c);
  const which = idx.length === 1 ? `GPU ${idx[0]}` : `GPUs ${idx.join(', ')}`;
  const lines = [
    `${which} on ${serverName}`,
    range(Date.parse(b.interval.start), Date.parse(b.interval.end)),
    STATE_WORDS[b.state] ?? b.state.replaceAll('_', ' '),
  ];
  if (b.run) lines.push(`job ${b.run.state.replaceAll('_', ' ')}`);
  return { heading: `${me !== null && b.owner === me ? 'you' : b.owner} · ${b.title}`, lines };
}
