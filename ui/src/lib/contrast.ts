// WCAG 2.x contrast of the theme's colour pairs, so both themes are checked, not eyeballed.

/** The custom properties (`--name: #rrggbb`) set in the rule for `selector`. */
export function themeColors(css: string, selector: string): Map<string, string> {
  const start = css.indexOf(`${selector} {`);
  if (start < 0) throw new Error(`no rule for ${selector}`);
  const body = css.slice(start, css.indexOf("}", start));
  const colors = new Map<string, string>();
  for (const m of body.matchAll(/--([a-z-]+):\s*(#[0-9a-fA-F]{6})\b/g)) {
    colors.set(m[1]!, m[2]!);
  }
  return colors;
}

function luminance(hex: string): number {
  const channel = (i: number) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
}

/** The contrast ratio of two `#rrggbb` colours, 1 to 21. */
export function ratio(a: string, b: string): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
  return (hi + 0.05) / (lo + 0.05);
}

/** Foreground on background pairs the console draws text with (variable names). */
export const TEXT_PAIRS: Array<[string, string]> = [
  ["text", "bg"],
  ["text", "panel"],
  ["text", "sel"],
  ["muted", "panel"],
  ["muted", "bg"],
  ["muted", "sel"],
  ["accent", "panel"],
  ["approve", "panel"],
  ["approve", "sel"],
  ["deny", "panel"],
  ["deny", "sel"],
  ["deny", "del-bg"],
  ["warn", "warn-bg"],
  ["warn", "panel"],
  ["on-approve", "approve"],
  ["on-accent", "accent"],
  ["on-deny", "deny"],
  ["approve", "add-bg"],
];
