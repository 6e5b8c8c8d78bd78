// Where times fall on the calendar as drawn: read from the lane cells the calendar renders
// (`[data-testid="gpu-lane"]`, one per GPU per day, with `data-start`/`data-end` in epoch ms),
// in client coordinates. The calendar component calls these; they only read the page, except
// `scrollTimelineTo`, which scrolls it.

/** A line on screen relative to the calendar's box (the now-line). */
export type Line = { left: number; top: number; width: number; height: number };

/**
 * Where instant `t` is in the calendar `wrap`: through that day's lane cells, clipped to the
 * visible lanes; null when not on screen. `vertical`: the week (time runs down).
 */
export function nowLineIn(wrap: HTMLElement, vertical: boolean, t: number): Line | null {
  const mainEl = wrap.querySelector<HTMLElement>('.ec-main');
  if (!mainEl) return null;
  const o = wrap.getBoundingClientRect();
  const m = mainEl.getBoundingClientRect();
  const head = wrap.querySelector<HTMLElement>('.ec-header')?.getBoundingClientRect();
  const side = wrap.querySelector<HTMLElement>('.ec-body .ec-sidebar')?.getBoundingClientRect();
  let lo = Infinity;
  let hi = -Infinity;
  let at: number | null = null;
  for (const c of wrap.querySelectorAll<HTMLElement>('[data-testid="gpu-lane"]')) {
    const from = Number(c.dataset.start);
    const to = Number(c.dataset.end);
    if (t < from || t >= to) continue;
    const r = c.getBoundingClientRect();
    const f = (t - from) / (to - from);
    at = vertical ? r.top + f * r.height : r.left + f * r.width;
    lo = Math.min(lo, vertical ? r.left : r.top);
    hi = Math.max(hi, vertical ? r.right : r.bottom);
  }
  if (at === null) return null;
  const minX = side && !vertical ? side.right : m.left;
  const minY = head ? head.bottom : m.top;
  if (vertical) {
    if (at < minY || at > m.bottom) return null;
    return { left: Math.max(lo, m.left) - o.left, width: Math.min(hi, m.right) - Math.max(lo, m.left), top: at - o.top, height: 0 };
  }
  if (at < minX || at > m.right) return null;
  const top = Math.max(lo, minY);
  return { left: at - o.left, width: 0, top: top - o.top, height: Math.min(hi, m.bottom) - top };
}

/** The client point of GPU `gpu` of `server`'s lane at instant `t`; null if not shown. */
export function lanePoint(wrap: HTMLElement, vertical: boolean, server: string, gpu: number, t: number): { x: number; y: number } | null {
  const cells = wrap.querySelectorAll<HTMLElement>(`[data-testid="gpu-lane"][data-server="${CSS.escape(server)}"][data-gpu="${gpu}"]`);
  for (const c of cells) {
    const from = Number(c.dataset.start);
    const to = Number(c.dataset.end);
    if (t >= from && t <= to) {
      const r = c.getBoundingClientRect();
      if (vertical) {
        return { x: r.left + r.width / 2, y: r.top + ((t - from) / (to - from)) * r.height };
      }
      return { x: r.left + ((t - from) / (to - from)) * r.width, y: r.top + r.height / 2 };
    }
  }
  return null;
}

/**
 * Scrolls a timeline so that instant `t` is at client x `at`; by default at its left edge,
 * right of the GPU labels. False when `t` is not in the range shown.
 */
export function scrollTimelineTo(wrap: HTMLElement, t: number, at?: number): boolean {
  const main = wrap.querySelector<HTMLElement>('.ec-main');
  const sidebar = wrap.querySelector<HTMLElement>('.ec-body .ec-sidebar');
  for (const c of wrap.querySelectorAll<HTMLElement>('[data-testid="gpu-lane"]')) {
    const from = Number(c.dataset.start);
    const to = Number(c.dataset.end);
    if (t < from || t >= to) continue;
    const r = c.getBoundingClientRect();
    const x = r.left + ((t - from) / (to - from)) * r.width;
    const left = at ?? (sidebar ? sidebar.getBoundingClientRect().right : r.left);
    if (main) main.scrollLeft += x - left;
    return true;
  }
  return false;
}

/** The instant under client x `x` on a timeline, or null where no lane is. */
export function timeAtX(wrap: HTMLElement, x: number): number | null {
  for (const c of wrap.querySelectorAll<HTMLElement>('[data-testid="gpu-lane"]')) {
    const r = c.getBoundingClientRect();
    if (x < r.left || x >= r.right || r.width === 0) continue;
    const from = Number(c.dataset.start);
    const to = Number(c.dataset.end);
    return from + ((x - r.left) / r.width) * (to - from);
  }
  return null;
}

/** The middle of the timeline's visible lanes, in client x (right of the GPU labels). */
export function visibleMiddleX(wrap: HTMLElement): number {
  const m = wrap.querySelector<HTMLElement>('.ec-main')?.getBoundingClientRect();
  const side = wrap.querySelector<HTMLElement>('.ec-body .ec-sidebar')?.getBoundingClientRect();
  if (!m) return 0;
  const left = side ? side.right : m.left;
  return (left + m.right) / 2;
}
