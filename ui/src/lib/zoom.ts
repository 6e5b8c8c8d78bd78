// Time zoom of the timeline views: how many pixels an hour takes. The default makes a two-hour
// block wide enough for "owner · title" (120 px: about 18 characters, e.g. "alice · bert
// sweep"); the 72 hours then scroll sideways, about 13 of them in a 1280-px window. "Fit" is
// the other way round: the whole range across the window, however narrow the blocks.

/** The steps the buttons and Ctrl+wheel (or a pinch) move through, in px per hour. */
export const ZOOM_STEPS = [8, 12, 16, 24, 32, 40, 60, 80, 120, 160, 240] as const;
/** What a calendar opens with. */
export const DEFAULT_PX_PER_HOUR = 60;

/** The next step in (`dir` > 0) or out from `px`; `px` itself at either end. */
export function zoomStep(px: number, dir: number): number {
  if (dir > 0) return ZOOM_STEPS.find((s) => s > px + 0.5) ?? ZOOM_STEPS[ZOOM_STEPS.length - 1];
  for (let i = ZOOM_STEPS.length - 1; i >= 0; i--) if (ZOOM_STEPS[i] < px - 0.5) return ZOOM_STEPS[i];
  return ZOOM_STEPS[0];
}

/** The hours one slot of a view spans (the 72-hour view one, the timeline week two). */
export function slotHours(view: string): number {
  return view === 'timeline' ? 2 : 1;
}

/** The slot width (px) for `pxPerHour` in `view`, never below the library's 2 px. */
export function slotWidthFor(view: string, pxPerHour: number): number {
  return Math.max(2, Math.round(pxPerHour * slotHours(view)));
}

/** The px per hour that shows `hours` across `width` pixels: what "Fit" chooses. */
export function fitPxPerHour(width: number, hours: number): number {
  return Math.max(ZOOM_STEPS[0] / 2, Math.floor((width / hours) * 10) / 10);
}

/** Wheel zoom, gathered: a touchpad's pinch sends many small Ctrl+wheel steps, a mouse one
 * large one per notch; each step of the zoom needs `ZOOM_WHEEL_STEP` of them in one way. */
export const ZOOM_WHEEL_STEP = 30;

/** Adds a Ctrl+wheel event's `deltaY` to `acc`: the new sum, and the step it makes (+1 in,
 * -1 out, 0 none yet; the sum starts again after a step, or when the way changes). */
export function gatherWheel(acc: number, deltaY: number): { acc: number; dir: number } {
  const sum = Math.sign(acc) === Math.sign(deltaY) ? acc + deltaY : deltaY;
  if (Math.abs(sum) < ZOOM_WHEEL_STEP) return { acc: sum, dir: 0 };
  return { acc: 0, dir: sum < 0 ? 1 : -1 };
}
