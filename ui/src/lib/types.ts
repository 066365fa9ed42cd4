// Protocol types come from the service's OpenAPI document (generated: src/generated/api.ts);
// the console's own types mirror src-tauri/src/console.rs and devices.rs.
import type { components } from "../generated/api";

type S = components["schemas"];
export type ActionView = S["ActionView"];
export type Action = S["Action"];
export type Diff = S["Diff"];
export type DecisionView = S["DecisionView"];
export type DecisionResult = S["DecisionResult"];
export type PolicyOutcome = S["PolicyOutcome"];
export type KeyKind = S["KeyKind"];
export type Verdict = S["Verdict"];

export type Connection =
  | { state: "idle" }
  | { state: "connecting" }
  | { state: "online" }
  | { state: "offline"; reason: string; retry_in_ms: number }
  | { state: "refused"; message: string };

export interface KeyView {
  backend: "pkcs11" | "tpm" | "software";
  kind: KeyKind;
  kind_label: string;
  hardware: boolean;
  label: string;
  fingerprint: string;
}

export interface ConsoleState {
  phase: "setup" | "locked" | "ready";
  server: string | null;
  /** What plain HTTP to another machine means, when the service URL is that (console.rs). */
  transport_warning: string | null;
  approver_id: string | null;
  key: KeyView | null;
  connection: Connection;
  places: Places;
}

/** Where the console keeps things (console.rs `Places`). */
export interface Places {
  config_dir: string;
  history: string;
  exports: string;
}

export type Candidate =
  | { backend: "pkcs11"; module: string; token_label: string; token_serial: string; description: string }
  | { backend: "pkcs11_unavailable"; module: string; reason: string }
  | { backend: "tpm"; tcti: string }
  | { backend: "software" };

export type NewKey =
  | { backend: "pkcs11"; module: string; token_label: string; label: string }
  | { backend: "tpm"; tcti: string; label: string }
  | { backend: "software"; label: string };

export type Checkpoint = S["Checkpoint"];
export type Actor = S["Actor"];
export type SignedGrant = S["SignedGrant"];
export type ExecutionOutcome = S["ExecutionOutcome"];

// The audit history (mirrors countersign-mirror's search, detail and status types).
export type Sort = "newest" | "oldest";

export interface SearchQuery {
  text?: string;
  status?: string | null;
  approver?: string | null;
  requester?: string | null;
  action_type?: string | null;
  environment?: string | null;
  tags?: string[];
  from?: string | null;
  to?: string | null;
  sort?: Sort;
  after?: number | null;
  offset?: number | null;
  limit?: number | null;
}

export interface RequestSummary {
  seq: number;
  id: string;
  created_at: string;
  expires_at: string;
  action_type: string;
  resource: string;
  environment: string;
  requester: string;
  on_behalf_of: string | null;
  tags: string[];
  justification: string;
  policy_outcome: string;
  quorum: number;
  status: "pending" | "approved" | "denied" | "expired" | "cancelled";
  decided_at: string | null;
  time_to_decision_ms: number | null;
  approvers: string[];
  approvals: number;
  denials: number;
  hardware_only: boolean;
  redeemed_at: string | null;
  outcome: string | null;
}

export interface Page {
  items: RequestSummary[];
  next: number | null;
}

export interface Facets {
  approvers: string[];
  requesters: string[];
  action_types: string[];
  environments: string[];
  tags: string[];
}

export interface DecisionDetail {
  seq: number;
  approver_id: string;
  verdict: Verdict;
  decided_at: string;
  recorded_at: string;
  comment: string;
  key_id: string;
  key_kind: KeyKind;
  hardware: boolean;
  signature: string;
}

export interface EventEntry {
  seq: number;
  recorded_at: string;
  kind: string;
  actor: Actor;
  leaf_hash: string;
  verified: boolean;
}

export interface RequestDetail {
  summary: RequestSummary;
  action: Action;
  digest: string;
  decisions: DecisionDetail[];
  grant: SignedGrant | null;
  outcome: ExecutionOutcome | null;
  events: EventEntry[];
  checkpoint_size: number;
  verified: boolean;
}

export interface RaisedAlarm {
  raised_at: string;
  kind: string;
  message: string;
}

export interface HistoryStatus {
  syncing: boolean;
  progress: { verified: number; target: number } | null;
  verified_size: number;
  checkpoint: Checkpoint | null;
  last_sync: string | null;
  last_error: string | null;
  alarms: RaisedAlarm[];
}

export type ExportFormat = "csv" | "bundle" | "pdf";

export interface ExportDone {
  path: string;
}

export type ConsoleEvent =
  | { type: "connection"; connection: Connection }
  | { type: "inbox"; requests: ActionView[] }
  | { type: "arrived"; request: ActionView }
  | { type: "history"; status: HistoryStatus }
  | { type: "snooze"; until: string | null }
  | { type: "export"; done: number; total: number };

/** A failed command: act on `code`, show `message`. */
export interface ConsoleError {
  code: string;
  message: string;
}

export function isConsoleError(e: unknown): e is ConsoleError {
  return typeof e === "object" && e !== null && "code" in e && "message" in e;
}
