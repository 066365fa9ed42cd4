// A glanceable risk level for the inbox, from what the request says about itself. It orders
// attention; it never decides anything (the policy does).
import type { ActionView } from "./types";

const HIGH_TAGS = new Set(["pii", "credentials", "secrets", "destructive", "security", "iam", "public-exposure"]);

export function risk(view: ActionView): "high" | "medium" | "low" {
  const r = view.action.request;
  const tags = r.tags ?? [];
  if (tags.some((t) => HIGH_TAGS.has(t))) return "high";
  if (r.environment === "prod" || r.environment === "production") return "medium";
  return "low";
}
