// Dragging on the timeline, as arithmetic: the point under the pointer in the rows' area, the
// drag rectangle's boxes, and a move or resize of one's own booking snapped to its server's
// grid. Pure: the component gives it the pointer, the scroll position and the rows.

import type { Selection } from './selection';
import { laneId } from './selection';
import { rowIndexAt, timeAt, xOf, type Row } from './timeline';

/** Where the rows' area starts in the scroller's box: right of the labels, under the head. */
export type Frame = {
  /** The scroller's client box, left and top. */
  left: number;
  top: number;
  scrollLeft: number;
  scrollTop: number;
  labelWidth: number;
  headHeight: number;
};

/** The point (client x, y) in the rows' area (px), or null over the labels or the head. */
export function contentPoint(f: Frame, x: number, y: number): { x: number; y: number } | null {
  const vx = x - f.left;
  const vy = y - f.top;
  if (vx < f.labelWidth || vy < f.headHeight) return null;
  return { x: vx - f.labelWidth + f.scrollLeft, y: vy - f.headHeight + f.scrollTop };
}

/** The client point of (x, y) in the rows' area. */
export function clientPoint(f: Frame, x: number, y: number): { x: number; y: number } {
  return { x: x + f.labelWidth - f.scrollLeft + f.left, y: y + f.headHeight - f.scrollTop + f.top };
}

/** The GPU row and the instant at a point of the rows' area; null off the GPU rows. */
export function hitRow(rows: Row[], rangeStart: number, pxPerHour: number, p: { x: number; y: number }): { row: Extract<Row, { kind: 'gpu' }>; t: number } | null {
  const i = rowIndexAt(rows, p.y);
  const row = i >= 0 ? rows[i] : null;
  if (!row || row.kind !== 'gpu') return null;
  return { row, t: timeAt(rangeStart, pxPerHour, p.x) };
}

/** A box in the rows' area, px. */
export type Rect = { left: number; top: number; width: number; height: number };

/** The rectangle's boxes: one per selected GPU whose row is shown. */
export function selectionBoxes(sel: Selection, rows: Row[], rangeStart: number, pxPerHour: number): Rect[] {
  const want = new Set(sel.lanes.map((l) => laneId(l.server, l.uuid)));
  const left = xOf(rangeStart, pxPerHour, sel.start);
  const width = xOf(rangeStart, pxPerHour, sel.end) - left;
  return rows.filter((r) => r.kind === 'gpu' && want.has(r.key)).map((r) => ({ left, width, top: r.top, height: r.height }));
}

/** A move of a whole booking, or a resize of its end. */
export type EditMode = 'move' | 'resize';

/**
 * The times of a booking [start, end) after the pointer moved by `dt` ms: moved or resized by
 * whole steps of the server's grid (`granularitySecs`), never shorter than one step.
 */
export function editedTimes(mode: EditMode, start: number, end: number, dt: number, granularitySecs: number): { start: number; end: number } {
  const g = Math.max(1, granularitySecs) * 1000;
  const d = Math.round(dt / g) * g;
  if (mode === 'move') return { start: start + d, end: end + d };
  return { start, end: Math.max(start + g, end + d) };
}
