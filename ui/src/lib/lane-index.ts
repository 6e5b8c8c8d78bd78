// The timeline's index of what is drawn in each GPU lane, sorted by start, so that the blocks
// in view are found by binary search (rows × time in view, not all bookings), and kept in step
// with the app's BookingBook through its journal: a pushed change updates one item, not the
// whole list. Pure; the timeline calls `sync` when the book's version moves.

import { GONE, type BookingBook } from './bookings';
import type { Maintenance } from './wire/Maintenance';
import { bookingItem, bookingKey, maintenanceItem, outsideItem, type Item } from './timeline-items';
import type { OutsideHold } from './wire/OutsideHold';

/** Items per lane, sorted by start. */
export class LaneIndex {
  private byLane = new Map<string, Item[]>();
  /** Per lane, the longest item's length: how far before a window an overlapping one starts. */
  private longest = new Map<string, number>();
  private items = new Map<string, Item>();

  /** How many items it holds. */
  get size(): number {
    return this.items.size;
  }

  /** The item with this key. */
  get(key: string): Item | undefined {
    return this.items.get(key);
  }

  /** All items. */
  all(): IterableIterator<Item> {
    return this.items.values();
  }

  /** Replaces everything with `items`: each lane sorted once. */
  reset(items: Iterable<Item>): void {
    this.byLane.clear();
    this.longest.clear();
    this.items.clear();
    for (const it of items) {
      this.items.set(it.key, it);
      for (const l of it.lanes) {
        let a = this.byLane.get(l);
        if (!a) this.byLane.set(l, (a = []));
        a.push(it);
        this.grow(l, it);
      }
    }
    for (const a of this.byLane.values()) a.sort((p, q) => p.start - q.start || cmp(p.key, q.key));
  }

  /** Puts `item` in, in place of any item with its key. */
  put(item: Item): void {
    this.remove(item.key);
    this.items.set(item.key, item);
    for (const l of item.lanes) {
      let a = this.byLane.get(l);
      if (!a) this.byLane.set(l, (a = []));
      a.splice(lowerBound(a, item.start, item.key), 0, item);
      this.grow(l, item);
    }
  }

  /** Takes the item with `key` out; whether there was one. */
  remove(key: string): boolean {
    const old = this.items.get(key);
    if (!old) return false;
    this.items.delete(key);
    for (const l of old.lanes) {
      const a = this.byLane.get(l);
      if (!a) continue;
      const i = a.indexOf(old, lowerBound(a, old.start, old.key));
      if (i >= 0) a.splice(i, 1);
    }
    return true;
  }

  /** The items of lane `lane` overlapping [from, to), by start. */
  query(lane: string, from: number, to: number): Item[] {
    const a = this.byLane.get(lane);
    if (!a) return [];
    const out: Item[] = [];
    for (let i = lowerBound(a, from - (this.longest.get(lane) ?? 0), ''); i < a.length && a[i].start < to; i++) {
      if (a[i].end > from) out.push(a[i]);
    }
    return out;
  }

  private grow(lane: string, it: Item) {
    const len = it.end - it.start;
    if (len > (this.longest.get(lane) ?? 0)) this.longest.set(lane, len);
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The first position in `a` (sorted by start, then key) at or after (start, key). */
function lowerBound(a: Item[], start: number, key: string): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const m = a[mid];
    if (m.start < start || (m.start === start && cmp(m.key, key) < 0)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A server as the timeline shows it: its id and who the person is there. */
export type ShownServer = { id: string; user: string | null };

/** More changes than this at once are cheaper as one rebuild. */
const REBUILD_OVER = 400;

/**
 * Keeps a LaneIndex equal to the visible bookings of the servers shown (and their maintenance
 * periods), reading the book's journal from where it stopped.
 */
export class BookSync {
  readonly index = new LaneIndex();
  /** The journal position read up to (counting entries cut from its front). */
  private pos = -1;
  /** What every item depends on besides its booking: servers shown, users, the setting. */
  private context = '';
  private maintenance = new Map<string, Maintenance[]>();
  private outside = new Map<string, OutsideHold[]>();

  /**
   * Brings the index up to date: the number of items put or removed, or -1 where it was
   * rebuilt (the first time, a different set of servers, a dropped server, a bulk load).
   */
  sync(
    book: BookingBook,
    servers: ShownServer[],
    showCommand: boolean,
    maintenance: Record<string, Maintenance[] | undefined>,
    outside: Record<string, OutsideHold[] | undefined> = {},
  ): number {
    const ctx = JSON.stringify([servers.map((s) => [s.id, s.user]), showCommand]);
    const end = book.journalBase + book.journal.length;
    const from = this.pos - book.journalBase;
    const entries = from >= 0 ? book.journal.slice(from) : null;
    const rebuild = ctx !== this.context || !entries || entries.length > REBUILD_OVER || entries.some(([, id]) => id === null);
    this.context = ctx;
    this.pos = end;
    const me = new Map(servers.map((s) => [s.id, s.user]));
    const make = (server: string, id: number): Item | null => {
      const b = book.get(server, id);
      if (!b || GONE.has(b.state)) return null;
      return bookingItem(server, b, me.get(server) ?? null, showCommand, book.stageOf(server, id));
    };
    if (rebuild) {
      const all: Item[] = [];
      this.maintenance.clear();
      this.outside.clear();
      for (const s of servers) {
        for (const b of book.visible(s.id)) all.push(bookingItem(s.id, b, s.user, showCommand, book.stageOf(s.id, b.id)));
        const periods = maintenance[s.id] ?? [];
        this.maintenance.set(s.id, periods);
        for (const m of periods) all.push(maintenanceItem(s.id, m));
        const holds = outside[s.id] ?? [];
        this.outside.set(s.id, holds);
        holds.forEach((o, k) => all.push(outsideItem(s.id, o, k)));
      }
      this.index.reset(all);
      return -1;
    }
    let n = 0;
    const seen = new Set<string>();
    for (const [server, id] of entries) {
      const key = bookingKey(server, id!);
      if (!me.has(server) || seen.has(key)) continue;
      seen.add(key);
      const it = make(server, id!);
      if (it) this.index.put(it);
      else this.index.remove(key);
      n++;
    }
    for (const s of servers) n += this.syncMaintenance(s.id, maintenance[s.id] ?? []);
    for (const s of servers) n += this.syncOutside(s.id, outside[s.id] ?? []);
    return n;
  }

  /** Replaces a server's outside holds when its list is a new one. */
  private syncOutside(server: string, holds: OutsideHold[]): number {
    const old = this.outside.get(server) ?? [];
    if (old === holds) return 0;
    old.forEach((o, k) => this.index.remove(outsideItem(server, o, k).key));
    holds.forEach((o, k) => this.index.put(outsideItem(server, o, k)));
    this.outside.set(server, holds);
    return old.length + holds.length;
  }

  /** Replaces a server's maintenance items when its list is a new one. */
  private syncMaintenance(server: string, periods: Maintenance[]): number {
    const old = this.maintenance.get(server) ?? [];
    if (old === periods) return 0;
    for (const m of old) this.index.remove(maintenanceItem(server, m).key);
    for (const m of periods) this.index.put(maintenanceItem(server, m));
    this.maintenance.set(server, periods);
    return old.length + periods.length;
  }
}
