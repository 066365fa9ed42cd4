// Risk as the policy judged it from the request's facts (its diff, parameters, where it runs),
// never from the agent's words about itself. It orders attention and decides how deliberate an
// approval must be; the policy alone decides what is allowed.

/** What risk is read from: an ActionView has this shape (kept structural so the pure logic is
 * tested without the generated protocol types). */
interface ActionView {
  action: {
    request: { environment: string };
    policy: { risk?: { level: "low" | "medium" | "high" | "critical"; reasons: string[] } | null };
  };
}

export type Level = "critical" | "high" | "medium" | "low" | "unrated";

/** Names that are not production; anything else is treated as production (as the default
 * policy does), so "prd" or a typo gets production's care. */
const NON_PRODUCTION = new Set(["dev", "development", "test", "testing", "qa", "staging", "stage", "sandbox", "local", "demo", "preview"]);

export function isProduction(environment: string): boolean {
  return !NON_PRODUCTION.has(environment.trim().toLowerCase());
}

/** The policy's level, or "unrated" when the policy judges no risk. */
export function level(view: ActionView): Level {
  return view.action.policy.risk?.level ?? "unrated";
}

/** The facts behind the level, as the policy worded them. */
export function reasons(view: ActionView): string[] {
  return view.action.policy.risk?.reasons ?? [];
}

/** "Critical risk", "Risk not rated by the policy". */
export function levelWords(l: Level): string {
  return l === "unrated" ? "Risk not rated by the policy" : `${l[0]!.toUpperCase()}${l.slice(1)} risk`;
}

/** One line for lists and notifications: "High risk: touches 52000 rows; …". */
export function riskLine(view: ActionView): string {
  const why = reasons(view);
  return why.length > 0 ? `${levelWords(level(view))}: ${why.join("; ")}` : levelWords(level(view));
}

/** Whether approving needs a deliberate act and an undo window: anything in production, any
 * policy-marked risk above low, or text with hidden characters. */
export function needsDeliberateApproval(view: ActionView, hiddenCharacters: number): boolean {
  const l = level(view);
  if (hiddenCharacters > 0) return true;
  if (l === "medium" || l === "high" || l === "critical") return true;
  if (l === "unrated") return isProduction(view.action.request.environment);
  return false;
}
