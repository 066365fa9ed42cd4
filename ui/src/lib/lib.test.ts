// Unit tests of the front end's pure logic, run with node's test runner after tsc.
import { test } from "node:test";
import assert from "node:assert/strict";
import { compare, fold, page, parseUnified, sideBySide, stats } from "./diff.js";
import { MAX_HIGHLIGHT, tokens } from "./highlight.js";
import { reveal, scan } from "./text.js";
import { dayEnd, dayStart, durationText } from "./history.js";

test("unified diff parses with line numbers", () => {
  const lines = parseUnified("--- a/x\n+++ b/x\n@@ -3,2 +3,3 @@\n keep\n-old\n+new\n+more\n");
  assert.deepEqual(
    lines.map((l) => [l.kind, l.text, l.oldNo, l.newNo]),
    [
      ["meta", "--- a/x", null, null],
      ["meta", "+++ b/x", null, null],
      ["hunk", "@@ -3,2 +3,3 @@", null, null],
      ["context", "keep", 3, 3],
      ["del", "old", 4, null],
      ["add", "new", null, 4],
      ["add", "more", null, 5],
    ],
  );
  assert.deepEqual(stats(lines), { added: 2, removed: 1 });
});

test("before/after comparison is minimal and complete", () => {
  const lines = compare("a\nb\nc\nd\n", "a\nx\nc\nd\ne\n");
  assert.deepEqual(
    lines.map((l) => `${l.kind}:${l.text}`),
    ["context:a", "del:b", "add:x", "context:c", "context:d", "add:e"],
  );
  const pairs = sideBySide(lines);
  assert.equal(pairs.length, 5);
  assert.deepEqual([pairs[1]?.left?.text, pairs[1]?.right?.text], ["b", "x"]);
});

test("a 10,000-line rewrite stays complete", () => {
  const before = Array.from({ length: 10000 }, (_, i) => `line ${i}`).join("\n");
  const after = Array.from({ length: 10000 }, (_, i) => `row ${i}`).join("\n");
  const lines = compare(before, after);
  assert.deepEqual(stats(lines), { added: 10000, removed: 10000 });
});

test("long unchanged runs fold with their count, changes never", () => {
  const rows = [..."cccccccccc", "+", ..."cccccccccc"].map((k) => ({ k }));
  const blocks = fold(rows, (r) => r.k === "c", 2);
  const shown = blocks.flatMap((b) => ("rows" in b ? b.rows : []));
  const folded = blocks.reduce((n, b) => n + ("fold" in b ? b.fold : 0), 0);
  assert.equal(shown.length + folded, rows.length, "every row is shown or counted");
  assert.ok(shown.some((r) => r.k === "+"));
  assert.equal(folded, 8 + 8);
});

test("bidi overrides and zero-width characters are revealed and counted", () => {
  const evil = "access = \u202Euser\u202C // admin\u200B";
  const pieces = reveal(evil);
  assert.equal(pieces.map((p) => p.text).join(""), "access = ⟦U+202E⟧user⟦U+202C⟧ // admin⟦U+200B⟧");
  assert.deepEqual(scan([evil]), { hidden: 3, bidi: 2 });
  assert.deepEqual(scan(["plain text\twith tab\n"]), { hidden: 0, bidi: 0 });
});

test("highlighting keeps the text exactly and never produces markup", () => {
  const line = `  "name": "<script>alert(1)</script>", "n": 42`;
  const t = tokens(line, "json");
  assert.equal(t.map((x) => x.text).join(""), line);
  assert.ok(t.some((x) => x.cls === "key" && x.text === '"name"'));
  assert.ok(t.some((x) => x.cls === "number" && x.text === "42"));
  const sql = tokens("SELECT * FROM users WHERE id = 1 -- note", "sql");
  assert.equal(sql.map((x) => x.text).join(""), "SELECT * FROM users WHERE id = 1 -- note");
  assert.ok(sql.some((x) => x.cls === "comment"));
  assert.deepEqual(tokens("anything", "cobol"), [{ text: "anything", cls: "plain" }]);
});

test("a huge diff is paged, and what is held back is counted", () => {
  const rows = Array.from({ length: 5000 }, (_, i) => ({ n: i }));
  const { blocks, held } = page([{ rows }], 2000);
  const shown = blocks.flatMap((b) => ("rows" in b ? b.rows : []));
  assert.equal(shown.length, 2000);
  assert.equal(held, 3000);
  assert.equal(page([{ rows }], 10000).held, 0);
});

test("a very long line is shown plain, whole", () => {
  const line = "x".repeat(MAX_HIGHLIGHT + 1);
  assert.deepEqual(tokens(line, "json"), [{ text: line, cls: "plain" }]);
});

test("history durations and day bounds read as people and the service expect", () => {
  assert.equal(durationText(850), "850 ms");
  assert.equal(durationText(42_000), "42.0 s");
  assert.equal(durationText(185_000), "3 min 05 s");
  assert.equal(durationText(7_800_000), "2 h 10 min");
  assert.equal(dayStart("2026-11-30"), "2026-11-30T00:00:00.000Z");
  assert.equal(dayEnd("2026-11-30"), "2026-12-01T00:00:00.000Z");
  assert.equal(dayEnd("2026-12-31"), "2027-01-01T00:00:00.000Z");
});

test("time left reads as a duration, never as a clock time", async () => {
  const { timeLeft } = await import("./time.js");
  const at = Date.parse("2026-11-30T12:00:00Z");
  const left = (seconds: number) => timeLeft(new Date(at + seconds * 1000).toISOString(), at);
  assert.equal(left(14 * 60 + 15), "14 min left");
  assert.equal(left(65), "1 min 05 s left");
  assert.equal(left(45), "45 s left");
  assert.equal(left(2 * 3600 + 180), "2 h 03 min left");
  assert.equal(left(0), "expired");
});

test("risk comes from the policy; deliberate approval for production, risk or hidden text", async () => {
  const { level, needsDeliberateApproval, riskLine, isProduction } = await import("./risk.js");
  const view = (environment: string, risk?: { level: "low" | "medium" | "high" | "critical"; reasons: string[] }) =>
    ({ action: { request: { environment, tags: ["routine"] }, policy: { risk } } }) as Parameters<typeof level>[0];
  assert.equal(level(view("staging")), "unrated");
  assert.equal(riskLine(view("prod", { level: "critical", reasons: ["opens 0.0.0.0/0", "runs in production"] })),
    "Critical risk: opens 0.0.0.0/0; runs in production");
  assert.equal(needsDeliberateApproval(view("staging", { level: "low", reasons: [] }), 0), false);
  assert.equal(needsDeliberateApproval(view("staging", { level: "low", reasons: [] }), 1), true);
  assert.equal(needsDeliberateApproval(view("staging", { level: "medium", reasons: ["x"] }), 0), true);
  // Unrated: production (by any spelling that is not a known non-production name) is deliberate.
  assert.equal(needsDeliberateApproval(view("prd"), 0), true);
  assert.equal(needsDeliberateApproval(view(" Staging "), 0), false);
  assert.equal(isProduction("live"), true);
});

test("both themes meet WCAG AA (4.5:1) for every text colour pair", async () => {
  const { ratio, themeColors, TEXT_PAIRS } = await import("./contrast.js");
  const { readFileSync } = await import("node:fs");
  const css = readFileSync("src/styles.css", "utf8");
  const light = themeColors(css, ":root");
  const dark = new Map([...light, ...themeColors(css, ':root[data-theme="dark"]')]);
  assert.ok(ratio("#ffffff", "#000000") > 20.9, "the formula");
  const failures: string[] = [];
  for (const [name, theme] of [["light", light], ["dark", dark]] as const) {
    for (const [fg, bg] of TEXT_PAIRS) {
      const a = theme.get(fg);
      const b = theme.get(bg);
      assert.ok(a && b, `${name}: --${fg} and --${bg} are set`);
      const r = ratio(a, b);
      if (r < 4.5) failures.push(`${name}: --${fg} on --${bg} is ${r.toFixed(2)}:1`);
    }
  }
  assert.deepEqual(failures, []);
});

test("near-identical requests are shown together, the first one leading", async () => {
  const { grouped } = await import("./groups.js");
  const v = (id: string, type: string, environment = "prod", requester = "agent:a") => ({
    id,
    action: { requester, request: { type, resource: "r", environment } },
  });
  const order = grouped([v("1", "x"), v("2", "y"), v("3", "x", " PROD"), v("4", "x", "prod", "agent:b")]);
  assert.deepEqual(order.map((o) => [o.view.id, o.first, o.group.length]), [
    ["1", true, 2],
    ["3", false, 2],
    ["2", true, 1],
    ["4", true, 1],
  ]);
});

test("every button a screen reader reaches has a name", async () => {
  const { readdirSync, readFileSync } = await import("node:fs");
  const files = ["src/App.svelte", ...readdirSync("src/components").map((f) => `src/components/${f}`)];
  const unnamed: string[] = [];
  for (const file of files) {
    const source = readFileSync(file, "utf8");
    for (const m of source.matchAll(/<button\b([^>]*)>([\s\S]*?)<\/button>/g)) {
      const [attributes, content] = [m[1] ?? "", m[2] ?? ""];
      if (/aria-label=/.test(attributes)) continue;
      // What is read out: words outside markup and expressions, an escaped agent text, or every
      // result of a conditional label ("Copied" : "Copy"); a symbol alone ("☾") is no name.
      const text = content.replace(/<[^>]*>/g, " ").replace(/\{[^}]*\}/g, " ");
      if (/[A-Za-z]{2,}/.test(text) || /<Text\b/.test(content)) continue;
      const results = [...content.matchAll(/[?:]\s*(["`])([^"`]*)\1/g)].map((r) => r[2] ?? "");
      if (results.length > 0 && results.every((r) => /[A-Za-z]{2,}/.test(r))) continue;
      unnamed.push(`${file}: <button${attributes.slice(0, 60)}>${content.slice(0, 40)}`);
    }
  }
  assert.deepEqual(unnamed, []);
});
