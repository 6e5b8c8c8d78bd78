import { describe, expect, it } from 'vitest';
import { DEFAULT_PX_PER_HOUR, fitPxPerHour, slotWidthFor, gatherWheel, zoomStep, ZOOM_STEPS } from '../zoom';

describe('time zoom', () => {
  it('opens wide enough for a two-hour block to read "owner · title"', () => {
    expect(DEFAULT_PX_PER_HOUR).toBeGreaterThanOrEqual(40);
    expect(slotWidthFor('next72', DEFAULT_PX_PER_HOUR) * 2).toBeGreaterThanOrEqual(120);
  });

  it('steps in and out through the levels and stops at the ends', () => {
    expect(zoomStep(40, 1)).toBe(60);
    expect(zoomStep(40, -1)).toBe(32);
    expect(zoomStep(ZOOM_STEPS[ZOOM_STEPS.length - 1], 1)).toBe(ZOOM_STEPS[ZOOM_STEPS.length - 1]);
    expect(zoomStep(ZOOM_STEPS[0], -1)).toBe(ZOOM_STEPS[0]);
    // From a fitted width between steps, to the neighbours.
    expect(zoomStep(17.3, 1)).toBe(24);
    expect(zoomStep(17.3, -1)).toBe(16);
  });

  it('gives the timeline week slots of two hours', () => {
    expect(slotWidthFor('next72', 40)).toBe(40);
    expect(slotWidthFor('timeline', 40)).toBe(80);
    expect(slotWidthFor('next72', 0.1)).toBe(2);
  });

  it('fits 72 hours across a window', () => {
    expect(fitPxPerHour(1000, 72)).toBe(13.8);
    expect(fitPxPerHour(10, 72)).toBe(ZOOM_STEPS[0] / 2);
  });

  it('steps once per mouse notch and once per few pinch events', () => {
    expect(gatherWheel(0, -100)).toEqual({ acc: 0, dir: 1 });
    expect(gatherWheel(0, 120)).toEqual({ acc: 0, dir: -1 });
    let acc = 0;
    const dirs = [];
    for (let i = 0; i < 8; i++) {
      const r = gatherWheel(acc, -8);
      acc = r.acc;
      dirs.push(r.dir);
    }
    expect(dirs).toEqual([0, 0, 0, 1, 0, 0, 0, 1]);
    // Turning back starts again.
    expect(gatherWheel(-24, 8)).toEqual({ acc: 8, dir: 0 });
  });
});
