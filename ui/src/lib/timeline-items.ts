// What the timeline draws for a booking or a maintenance period (an `Item`: its times, its
// lanes, its colours and words), and where its block goes in a row (`blockBox`). Pure; the
// item does not depend on the clock, the box does (past, editable), so a minute passing
// changes only the boxes of the blocks it changes.

import type { Booking } from './wire/Booking';
import type { Maintenance } from './wire/Maintenance';
import type { OutsideHold } from './wire/OutsideHold';
import { bookingClasses, type BookingProps } from './calendar-model';
import { colourFor } from './colors';
import { laneId } from './selection';
import { stagedFraction, type Staging } from './bookings';
import { formatClock } from './time';
import { xOf } from './timeline';

/** One thing drawn in one or more lanes. */
export type Item = {
  /** `server:id` for a booking, `server:mid` for a maintenance period. */
  key: string;
  start: number;
  end: number;
  /** The lane ids (`server/uuid`) it is drawn in. */
  lanes: string[];
  title: string;
  /** "04:00–06:00" in the local zone. */
  timeText: string;
  props: BookingProps;
  /** Classes that do not change with the clock (state, own/other, asap, running). */
  classes: string;
  background: string;
  text: string;
  /** A booking's state allows moving (not yet started) and resizing; the clock decides too. */
  canMove: boolean;
  canResize: boolean;
};

const EDITABLE = new Set(['confirmed', 'pending_approval', 'active']);

/** The key of booking `id` of `server`. */
export function bookingKey(server: string, id: number): string {
  return `${server}:${id}`;
}

/** "04:00–06:00": a block's times in the local zone. */
export function clockRange(start: number, end: number): string {
  return `${formatClock(start)}–${formatClock(end)}`;
}

/** The item of booking `b` on `server` for person `me`. */
export function bookingItem(server: string, b: Booking, me: string | null, showCommand: boolean, staging?: Staging): Item {
  const own = me !== null && b.owner === me;
  const colour = own ? { background: 'var(--own-bg)', text: 'var(--own-text)' } : colourFor(b.owner);
  const start = Date.parse(b.interval.start);
  const end = Date.parse(b.interval.end);
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
  // Everything but "past", which the clock decides (blockBox).
  const classes = bookingClasses(b, own, -Infinity).join(' ');
  return {
    key: bookingKey(server, b.id),
    start,
    end,
    lanes: b.gpus.map((u) => laneId(server, u)),
    title: b.title,
    timeText: clockRange(start, end),
    props,
    classes,
    background: colour.background,
    text: colour.text,
    canMove: own && EDITABLE.has(b.state) && b.state !== 'active',
    canResize: own && EDITABLE.has(b.state),
  };
}

/** The item of a maintenance period: its own kind of block, never moved here. */
export function maintenanceItem(server: string, m: Maintenance): Item {
  const fault = m.cause === 'fault';
  const start = Date.parse(m.interval.start);
  const end = Date.parse(m.interval.end);
  return {
    key: `${server}:m${m.id}`,
    start,
    end,
    lanes: m.gpus.map((u) => laneId(server, u)),
    title: fault ? `Out of service: ${m.reason}` : `Maintenance: ${m.reason}`,
    timeText: clockRange(start, end),
    props: {
      server,
      id: m.id,
      owner: m.by,
      state: 'maintenance',
      own: false,
      asap: false,
      job: null,
      staged: null,
      maintenance: { reason: m.reason, fault, whole: m.whole_server },
    },
    classes: `maintenance ${fault ? 'fault' : 'planned'}`,
    background: '',
    text: '',
    canMove: false,
    canResize: false,
  };
}

/** The item of what holds GPUs outside gpubook (`k`: its place in the server's list). */
export function outsideItem(server: string, o: OutsideHold, k: number): Item {
  const start = Date.parse(o.start);
  const end = Date.parse(o.end);
  return {
    key: `${server}:o${k}:${o.title}`,
    start,
    end,
    lanes: o.gpus.map((u) => laneId(server, u)),
    title: o.title,
    timeText: clockRange(start, end),
    props: { server, id: k, owner: o.owner, state: 'outside', own: false, asap: false, job: null, staged: null, outside: true },
    classes: 'outside',
    background: '',
    text: '',
    canMove: false,
    canResize: false,
  };
}

/** Where an item's block is, in px within the rows' area, and what the clock says of it. */
export type Box = {
  /** `lane|item key`: one block per lane the item is drawn in. */
  key: string;
  item: Item;
  left: number;
  width: number;
  top: number;
  height: number;
  /** Over (its end is past now). */
  past: boolean;
  /** The person may move it now, or resize it (its end). */
  movable: boolean;
  resizable: boolean;
};

/**
 * The block of `item` in the row at `top` (height `height`) of lane `lane`, for a range that
 * starts at `rangeStart`, at `pxPerHour`, at `now`. `level`/`levels`: its place among items
 * that overlap it in the same row (they share the row's height).
 */
export function blockBox(
  item: Item,
  lane: string,
  top: number,
  height: number,
  rangeStart: number,
  pxPerHour: number,
  now: number,
  level = 0,
  levels = 1,
): Box {
  const left = xOf(rangeStart, pxPerHour, item.start);
  const right = xOf(rangeStart, pxPerHour, item.end);
  const h = (height - 3) / levels;
  const live = item.end > now;
  return {
    key: `${lane}|${item.key}`,
    item,
    left: Math.round(left * 10) / 10,
    width: Math.max(2, Math.round((right - left - 1) * 10) / 10),
    top: Math.round(top + 2 + level * h),
    height: Math.round(h - 1),
    past: !live,
    movable: live && item.canMove,
    resizable: live && item.canResize,
  };
}

/** Whether two boxes draw the same (the old one can stay on screen untouched). */
export function sameBox(a: Box, b: Box): boolean {
  return (
    a.item === b.item &&
    a.left === b.left &&
    a.width === b.width &&
    a.top === b.top &&
    a.height === b.height &&
    a.past === b.past &&
    a.movable === b.movable &&
    a.resizable === b.resizable
  );
}

/**
 * Levels for items of one row sorted by start: each takes the lowest level free at its
 * start; `levels` is how many the row needs (1 when nothing overlaps, as the agent keeps it).
 */
export function stack(items: Item[]): { level: number[]; levels: number } {
  const ends: number[] = [];
  const level = items.map((it) => {
    let l = ends.findIndex((e) => e <= it.start);
    if (l < 0) l = ends.push(0) - 1;
    ends[l] = it.end;
    return l;
  });
  return { level, levels: Math.max(1, ends.length) };
}
