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
  approver_id: string | null;
  key: KeyView | null;
  connection: Connection;
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

export type ConsoleEvent =
  | { type: "connection"; connection: Connection }
  | { type: "inbox"; requests: ActionView[] }
  | { type: "arrived"; request: ActionView };

/** A failed command: act on `code`, show `message`. */
export interface ConsoleError {
  code: string;
  message: string;
}

export function isConsoleError(e: unknown): e is ConsoleError {
  return typeof e === "object" && e !== null && "code" in e && "message" in e;
}
