import { describe, expect, it } from 'vitest';
import { boxesOver, hitCell, type Cell } from '../geometry';

const D = 86_400_000;
const day0 = Date.UTC(2026, 10, 26);
// A timeline: 3 lanes, 2 day cells each, 240 px per day, 40 px per lane.
const cells: Cell[] = [];
for (let lane = 0; lane < 3; lane++) {
  for (let d = 0; d < 2; d++) {
    cells.push({ lane, start: day0 + d * D, end: day0 + (d + 1) * D, left: 100 + d * 240, top: 50 + lane * 40, width: 240, height: 40 });
  }
}

describe('lanes on screen', () => {
  it('finds the lane and the instant under the pointer', () => {
    expect(hitCell(cells, 100 + 140, 50 + 45, false)).toEqual({ lane: 1, t: day0 + 14 * 3_600_000 });
    expect(hitCell(cells, 100 + 240 + 60, 50 + 85, false)).toEqual({ lane: 2, t: day0 + D + 6 * 3_600_000 });
    expect(hitCell(cells, 20, 60, false)).toBeNull();
  });

  it('draws one box per lane for a rectangle over midnight', () => {
    const boxes = boxesOver(cells, new Set([0, 1]), day0 + 20 * 3_600_000, day0 + D + 2 * 3_600_000, false);
    expect(boxes).toEqual([
      { left: 300, top: 50, width: 60, height: 40 },
      { left: 300, top: 90, width: 60, height: 40 },
    ]);
  });

  it('runs time downwards in the week grid', () => {
    const col: Cell[] = [{ lane: 0, start: day0, end: day0 + D, left: 10, top: 0, width: 30, height: 480 }];
    expect(hitCell(col, 20, 280, true)).toEqual({ lane: 0, t: day0 + 14 * 3_600_000 });
    const [b, ...rest] = boxesOver(col, new Set([0]), day0 + 14 * 3_600_000, day0 + 18 * 3_600_000, true);
    expect(rest).toEqual([]);
    expect(b.left).toBe(10);
    expect(b.width).toBe(30);
    expect(b.top).toBeCloseTo(280);
    expect(b.height).toBeCloseTo(80);
  });
});
