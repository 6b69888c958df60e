// What a command prints of values that came from requests or apps (tap events, log
// lines, explain's headers): control characters made visible, so nothing a client sent
// can move the cursor, retitle the window or rewrite what the terminal shows (ANSI and
// C1 escape injection), and one value is bounded.

/**
 * C0 controls, DEL, C1 controls (U+0080-U+009F: 0x9B alone starts a CSI sequence on
 * some terminals), line and paragraph separators, and the bidirectional overrides and
 * isolates (which reorder what follows them on screen, "Trojan Source").
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `s` with every unprintable character written as `\xNN` or `\u{NNNN}`, cut at `max` characters. */
export function printable(s: string, max = 1024): string {
  const cut = s.length > max ? `${s.slice(0, max)}…` : s;
  return cut.replace(UNPRINTABLE, (c) => {
    const n = c.charCodeAt(0);
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u{${n.toString(16)}}`;
  });
}
