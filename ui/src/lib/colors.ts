// One colour per person, stable across sessions and machines: a hue from a hash of the name.

/** FNV-1a over the UTF-16 code units; stable and cheap. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Colours of one person's bookings. */
export type PersonColour = { background: string; border: string; text: string };

/** The colour of `owner`'s bookings; the same name gives the same colour everywhere. */
export function colourFor(owner: string): PersonColour {
  // 24 well-separated hues, skipping nothing: enough for a lab.
  const hue = (hash(owner) % 24) * 15;
  return {
    background: `hsl(${hue} 55% 42%)`,
    border: `hsl(${hue} 60% 30%)`,
    text: '#fff',
  };
}
