// Where lanes are on screen: snapshots of the lane cells (one per GPU per day) taken when a
// drag starts, so each pointer move is arithmetic, with no layout or hit test of a calendar
// holding thousands of bookings. Pure: the calendar gives it rectangles.

/** One lane cell on screen: a GPU's lane over [start, end). */
export type Cell = { lane: number; start: number; end: number; left: number; top: number; width: number; height: number };

/** The lane and instant at a point, or null off the lanes. `vertical`: time runs downwards. */
export function hitCell(cells: Cell[], x: number, y: number, vertical: boolean): { lane: number; t: number } | null {
  for (const c of cells) {
    if (x < c.left || x >= c.left + c.width || y < c.top || y >= c.top + c.height) continue;
    const f = vertical ? (y - c.top) / c.height : (x - c.left) / c.width;
    return { lane: c.lane, t: c.start + f * (c.end - c.start) };
  }
  return null;
}

/** The rectangles covering lanes `lanes` over [start, end), one per cell touched. */
export function boxesOver(
  cells: Cell[],
  lanes: Set<number>,
  start: number,
  end: number,
  vertical: boolean,
): { left: number; top: number; width: number; height: number }[] {
  const out: { left: number; top: number; width: number; height: number }[] = [];
  const last = new Map<number, { left: number; top: number; width: number; height: number }>();
  for (const c of [...cells].sort((p, q) => p.lane - q.lane || p.start - q.start)) {
    if (!lanes.has(c.lane)) continue;
    const a = Math.max(c.start, start);
    const b = Math.min(c.end, end);
    if (a >= b) continue;
    const f0 = (a - c.start) / (c.end - c.start);
    const f1 = (b - c.start) / (c.end - c.start);
    const box = vertical
      ? { left: c.left, width: c.width, top: c.top + f0 * c.height, height: (f1 - f0) * c.height }
      : { left: c.left + f0 * c.width, width: (f1 - f0) * c.width, top: c.top, height: c.height };
    // One box per lane where its day cells touch (the timeline), so no seams at midnight.
    const prev = last.get(c.lane);
    if (!vertical && prev && Math.abs(prev.left + prev.width - box.left) < 1.5 && prev.top === box.top) {
      prev.width = box.left + box.width - prev.left;
      continue;
    }
    out.push(box);
    last.set(c.lane, box);
  }
  return out;
}
