// Protocol types come from the service's OpenAPI document (generated: src/generated/api.ts);
// the console's own types from the console's Rust types (generated: src/generated/console.ts).
import type { components } from "../generated/api";
import type { components as console } from "../generated/console";

type S = components["schemas"];
export type ActionView = S["ActionView"];
export type Action = S["Action"];
export type Diff = S["Diff"];
export type DecisionView = S["DecisionView"];
export type DecisionResult = S["DecisionResult"];
export type ReviewResult = S["ReviewResult"];
export type PolicyOutcome = S["PolicyOutcome"];
export type KeyKind = S["KeyKind"];
export type Verdict = S["Verdict"];

// Generated from the console's Rust types (src-tauri/src/types.rs → src/generated/console.ts).
type C = console["schemas"];
export type Connection = C["Connection"];
export type KeyView = C["KeyView"];
export type Phase = C["Phase"];
export type ConsoleState = C["ConsoleState"];
export type Places = C["Places"];
export type Candidate = C["Candidate"];
export type NewKey = C["NewKey"];

export type Checkpoint = S["Checkpoint"];
export type Actor = S["Actor"];
export type SignedGrant = S["SignedGrant"];
export type ExecutionOutcome = S["ExecutionOutcome"];

// The audit history (countersign-mirror's search, detail and status types).
export type Sort = C["Sort"];
export type SearchQuery = C["SearchQuery"];
export type RequestSummary = C["RequestSummary"];
export type Page = C["Page"];
export type Facets = C["Facets"];
export type DecisionDetail = C["DecisionDetail"];
export type EventEntry = C["EventEntry"];
export type RequestDetail = C["RequestDetail"];
export type RaisedAlarm = C["RaisedAlarm"];
export type HistoryStatus = C["HistoryStatus"];
export type ExportFormat = C["ExportFormat"];
export type ExportDone = C["ExportDone"];
export type ConsoleEvent = C["ConsoleEvent"];

/** A failed command: act on `code`, show `message`. */
export interface ConsoleError {
  code: string;
  message: string;
}

export function isConsoleError(e: unknown): e is ConsoleError {
  return typeof e === "object" && e !== null && "code" in e && "message" in e;
}
