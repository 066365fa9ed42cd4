// Diffs as the request view shows them: unified (parsed from the agent's text) or
// before/after (compared here), each as rows for a unified or side-by-side layout. Long runs
// of unchanged lines are collapsed with their count; nothing is ever dropped silently.

export type Kind = "context" | "add" | "del" | "hunk" | "meta";

export interface Line {
  kind: Kind;
  text: string;
  oldNo: number | null;
  newNo: number | null;
}

/** Parses a unified diff. Lines that are not diff syntax are kept as context. */
export function parseUnified(text: string): Line[] {
  const lines: Line[] = [];
  let oldNo = 0;
  let newNo = 0;
  for (const raw of splitLines(text)) {
    if (raw.startsWith("@@")) {
      const m = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/.exec(raw);
      if (m) {
        oldNo = Number(m[1]);
        newNo = Number(m[2]);
      }
      lines.push({ kind: "hunk", text: raw, oldNo: null, newNo: null });
    } else if (raw.startsWith("+++") || raw.startsWith("---") || raw.startsWith("diff ") || raw.startsWith("index ")) {
      lines.push({ kind: "meta", text: raw, oldNo: null, newNo: null });
    } else if (raw.startsWith("+")) {
      lines.push({ kind: "add", text: raw.slice(1), oldNo: null, newNo: newNo++ });
    } else if (raw.startsWith("-")) {
      lines.push({ kind: "del", text: raw.slice(1), oldNo: oldNo++, newNo: null });
    } else {
      lines.push({ kind: "context", text: raw.startsWith(" ") ? raw.slice(1) : raw, oldNo: oldNo++, newNo: newNo++ });
    }
  }
  return lines;
}

/** Edits beyond which the middle of a before/after diff is shown as removed then added. */
const MAX_EDITS = 2000;

/**
 * Compares two texts line by line: common prefix and suffix first, then Myers' O(ND)
 * algorithm on the middle (memory O(D²), capped at MAX_EDITS edits, beyond which the middle
 * is shown as removed then added — still complete, just less fine-grained).
 */
export function compare(before: string, after: string): Line[] {
  const a = splitLines(before);
  const b = splitLines(after);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const out: Line[] = [];
  for (let i = 0; i < start; i++) out.push({ kind: "context", text: a[i] ?? "", oldNo: i + 1, newNo: i + 1 });
  const middle = myers(a.slice(start, endA), b.slice(start, endB)) ?? [
    ...a.slice(start, endA).map((_, i) => ({ op: "del" as const, x: i, y: 0 })),
    ...b.slice(start, endB).map((_, i) => ({ op: "add" as const, x: 0, y: i })),
  ];
  for (const e of middle) {
    if (e.op === "same") out.push({ kind: "context", text: a[start + e.x] ?? "", oldNo: start + e.x + 1, newNo: start + e.y + 1 });
    else if (e.op === "del") out.push({ kind: "del", text: a[start + e.x] ?? "", oldNo: start + e.x + 1, newNo: null });
    else out.push({ kind: "add", text: b[start + e.y] ?? "", oldNo: null, newNo: start + e.y + 1 });
  }
  const shift = endB - endA;
  for (let i = endA; i < a.length; i++) out.push({ kind: "context", text: a[i] ?? "", oldNo: i + 1, newNo: i + shift + 1 });
  return out;
}

type Edit = { op: "same" | "del" | "add"; x: number; y: number };

/** Myers' shortest edit script, or null when it needs more than MAX_EDITS edits. */
function myers(a: string[], b: string[]): Edit[] | null {
  const n = a.length;
  const m = b.length;
  // trace[d][k + d] = furthest x on diagonal k after d edits.
  const trace: Int32Array[] = [];
  let prev = new Int32Array(1);
  let found = -1;
  for (let d = 0; d <= Math.min(n + m, MAX_EDITS); d++) {
    const cur = new Int32Array(2 * d + 1);
    for (let k = -d; k <= d; k += 2) {
      const down = k === -d || (k !== d && (prev[k - 1 + (d - 1)] ?? 0) < (prev[k + 1 + (d - 1)] ?? 0));
      let x = d === 0 ? 0 : down ? (prev[k + 1 + (d - 1)] ?? 0) : (prev[k - 1 + (d - 1)] ?? 0) + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      cur[k + d] = x;
      if (x >= n && y >= m) found = d;
    }
    trace.push(cur);
    prev = cur;
    if (found >= 0) break;
  }
  if (found < 0) return null;
  const edits: Edit[] = [];
  let x = n;
  let y = m;
  for (let d = found; d >= 0; d--) {
    const k = x - y;
    let prevX = 0;
    let prevY = 0;
    if (d > 0) {
      const p = trace[d - 1]!;
      const down = k === -d || (k !== d && (p[k - 1 + (d - 1)] ?? 0) < (p[k + 1 + (d - 1)] ?? 0));
      const prevK = down ? k + 1 : k - 1;
      prevX = p[prevK + (d - 1)] ?? 0;
      prevY = prevX - prevK;
    }
    while (x > prevX && y > prevY) {
      x--;
      y--;
      edits.push({ op: "same", x, y });
    }
    if (d > 0) {
      if (x === prevX) {
        y--;
        edits.push({ op: "add", x, y });
      } else {
        x--;
        edits.push({ op: "del", x, y });
      }
    }
  }
  return edits.reverse();
}

/** A row of the side-by-side layout. */
export interface Pair {
  left: Line | null;
  right: Line | null;
}

/** Pairs deletions with the additions that follow them; context sits on both sides. */
export function sideBySide(lines: Line[]): Pair[] {
  const pairs: Pair[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.kind === "del") {
      const dels: Line[] = [];
      const adds: Line[] = [];
      while (i < lines.length && lines[i]!.kind === "del") dels.push(lines[i++]!);
      while (i < lines.length && lines[i]!.kind === "add") adds.push(lines[i++]!);
      for (let j = 0; j < Math.max(dels.length, adds.length); j++) {
        pairs.push({ left: dels[j] ?? null, right: adds[j] ?? null });
      }
    } else if (line.kind === "add") {
      pairs.push({ left: null, right: line });
      i++;
    } else {
      pairs.push({ left: line, right: line });
      i++;
    }
  }
  return pairs;
}

/** A shown stretch of rows, or a fold standing for `count` unchanged rows. */
export type Block<T> = { rows: T[] } | { fold: number; start: number };

/**
 * Folds runs of more than `2 * keep + 1` unchanged rows, keeping `keep` on each side of a
 * change. `isContext` says which rows are unchanged.
 */
export function fold<T>(rows: T[], isContext: (row: T) => boolean, keep = 3): Block<T>[] {
  const blocks: Block<T>[] = [];
  let shown: T[] = [];
  let i = 0;
  while (i < rows.length) {
    let j = i;
    while (j < rows.length && isContext(rows[j]!)) j++;
    const run = j - i;
    const leading = i === 0 ? 0 : keep;
    const trailing = j === rows.length ? 0 : keep;
    if (run > leading + trailing + 1) {
      shown.push(...rows.slice(i, i + leading));
      blocks.push({ rows: shown });
      blocks.push({ fold: run - leading - trailing, start: i + leading });
      shown = rows.slice(j - trailing, j);
    } else {
      shown.push(...rows.slice(i, j));
    }
    if (j < rows.length) shown.push(rows[j]!);
    i = j + 1;
  }
  if (shown.length) blocks.push({ rows: shown });
  return blocks;
}

/** Counts of added and removed lines. */
export function stats(lines: Line[]): { added: number; removed: number } {
  let added = 0;
  let removed = 0;
  for (const l of lines) {
    if (l.kind === "add") added++;
    if (l.kind === "del") removed++;
  }
  return { added, removed };
}

function splitLines(text: string): string[] {
  const lines = text.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/** Rows shown at first, and added by each "show more". */
export const PAGE = 2000;

/**
 * Cuts a list of blocks to at most `budget` shown rows (a fold counts as one row). Returns the
 * blocks to render and how many rows were held back, so the view can say so.
 */
export function page<T>(blocks: Block<T>[], budget: number): { blocks: Block<T>[]; held: number } {
  const out: Block<T>[] = [];
  let left = budget;
  let held = 0;
  for (const block of blocks) {
    if ("fold" in block) {
      if (left > 0) {
        out.push(block);
        left -= 1;
      } else {
        held += block.fold;
      }
      continue;
    }
    if (left >= block.rows.length) {
      out.push(block);
      left -= block.rows.length;
    } else {
      if (left > 0) out.push({ rows: block.rows.slice(0, left) });
      held += block.rows.length - Math.max(left, 0);
      left = 0;
    }
  }
  return { blocks: out, held };
}
