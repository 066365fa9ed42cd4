// Agent-supplied text is data. It is always rendered as text nodes (never HTML), and
// characters that could make it read differently from what it is — bidirectional overrides
// ("Trojan Source"), zero-width and other invisible characters, controls — are shown as
// visible markers and counted so the view can warn.

/** A run of text: plain, or a marker standing for one hidden character. */
export type Piece = { text: string; hidden: false } | { text: string; hidden: true; code: string };

const BIDI = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/;
const INVISIBLE = /[\u00AD\u034F\u115F\u1160\u17B4\u17B5\u180E\u200B-\u200D\u2060-\u2064\u206A-\u206F\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF9-\uFFFB]/;
// C0/C1 controls other than tab and newline.
const CONTROL = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/;

export function isHidden(ch: string): boolean {
  return BIDI.test(ch) || INVISIBLE.test(ch) || CONTROL.test(ch);
}

export function isBidi(ch: string): boolean {
  return BIDI.test(ch);
}

function codeOf(ch: string): string {
  return "U+" + (ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0");
}

/** Splits `text` into visible runs and one marker per hidden character. */
export function reveal(text: string): Piece[] {
  const pieces: Piece[] = [];
  let run = "";
  for (const ch of text) {
    if (isHidden(ch)) {
      if (run) pieces.push({ text: run, hidden: false });
      run = "";
      const code = codeOf(ch);
      pieces.push({ text: `⟦${code}⟧`, hidden: true, code });
    } else {
      run += ch;
    }
  }
  if (run) pieces.push({ text: run, hidden: false });
  return pieces;
}

/** How many hidden and bidirectional characters `texts` hold together. */
export function scan(texts: Iterable<string>): { hidden: number; bidi: number } {
  let hidden = 0;
  let bidi = 0;
  for (const text of texts) {
    for (const ch of text) {
      if (isHidden(ch)) hidden += 1;
      if (isBidi(ch)) bidi += 1;
    }
  }
  return { hidden, bidi };
}

/** Every string inside a JSON value (keys too), for scanning. */
export function* strings(value: unknown): Generator<string> {
  if (typeof value === "string") {
    yield value;
  } else if (Array.isArray(value)) {
    for (const v of value) yield* strings(v);
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      yield k;
      yield* strings(v);
    }
  }
}
