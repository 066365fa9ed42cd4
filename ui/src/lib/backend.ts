// The one interface the views use to reach the console's Rust side. The Tauri implementation
// is the only one shipped; views never call `invoke` themselves.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type {
  ActionView,
  Candidate,
  ConsoleEvent,
  ConsoleState,
  DecisionResult,
  ReviewResult,
  ExportDone,
  ExportFormat,
  Facets,
  HistoryStatus,
  KeyView,
  NewKey,
  Page,
  RequestDetail,
  SearchQuery,
  Verdict,
} from "./types";

export interface Backend {
  state(): Promise<ConsoleState>;
  detectKeys(): Promise<Candidate[]>;
  createKey(key: NewKey, pin: string | null): Promise<KeyView>;
  enroll(server: string, approverId: string, code: string): Promise<ConsoleState>;
  /** The service's OpenID Provider (its issuer), or null when it has none. */
  identityProvider(server: string): Promise<string | null>;
  /** Enrols the new key for whoever signs in at the provider, in the system browser. */
  enrollWithSignIn(server: string): Promise<ConsoleState>;
  /** Signs in again at the provider, vouching afresh for the key; when the sign-in was made. */
  signInAgain(): Promise<string>;
  /** Moves to another address of the same service; refused unless the key signs in there. */
  changeServer(server: string): Promise<ConsoleState>;
  unlock(pin: string | null): Promise<ConsoleState>;
  inbox(): Promise<ActionView[]>;
  request(id: string): Promise<ActionView>;
  /** `verificationCode`: the code picked, for requests whose policy asks for one. */
  decide(id: string, verdict: Verdict, comment: string, verificationCode: string | null): Promise<DecisionResult>;
  snooze(minutes: number): Promise<void>;
  historyStatus(): Promise<HistoryStatus>;
  historySearch(query: SearchQuery): Promise<Page>;
  historyCount(query: SearchQuery): Promise<number>;
  historyFacets(): Promise<Facets>;
  historyRequest(id: string): Promise<RequestDetail>;
  historySync(): Promise<void>;
  historyExport(format: ExportFormat, query: SearchQuery): Promise<ExportDone>;
  historyCancelExport(): Promise<void>;
  /** The request a `countersign://request/<id>` link the console was started with names, once. */
  startLink(): Promise<string | null>;
  /** Break-glass uses waiting for this approver's review. */
  pendingReviews(): Promise<ActionView[]>;
  /** A break-glass use whole, checked against its digest, for its review. */
  reviewRequest(id: string): Promise<ActionView>;
  /** Signs and sends a review (`concern`: the use was not justified or needs follow-up). */
  review(id: string, concern: boolean, comment: string): Promise<ReviewResult>;
  onEvent(handler: (event: ConsoleEvent) => void): Promise<UnlistenFn>;
  onOpenRequest(handler: (id: string | null) => void): Promise<UnlistenFn>;
  /** A decision made outside the window (a notification's button). */
  onDecided(handler: (id: string, result: DecisionResult) => void): Promise<UnlistenFn>;
}

export function tauriBackend(): Backend {
  return {
    state: () => invoke("console_state"),
    detectKeys: () => invoke("detect_keys"),
    createKey: (key, pin) => invoke("create_key", { key, pin }),
    enroll: (server, approverId, code) => invoke("enroll", { server, approverId, code }),
    identityProvider: (server) => invoke("identity_provider", { server }),
    enrollWithSignIn: (server) => invoke("enroll_with_sign_in", { server }),
    signInAgain: () => invoke("sign_in_again"),
    changeServer: (server) => invoke("change_server", { server }),
    unlock: (pin) => invoke("unlock", { pin }),
    inbox: () => invoke("inbox"),
    request: (id) => invoke("request", { id }),
    decide: (id, verdict, comment, verificationCode) =>
      invoke("decide", { id, verdict, comment, verificationCode }),
    snooze: (minutes) => invoke("snooze", { minutes }),
    historyStatus: () => invoke("history_status"),
    historySearch: (query) => invoke("history_search", { query }),
    historyCount: (query) => invoke("history_count", { query }),
    historyFacets: () => invoke("history_facets"),
    historyRequest: (id) => invoke("history_request", { id }),
    historySync: () => invoke("history_sync"),
    historyExport: (format, query) => invoke("history_export", { format, query }),
    historyCancelExport: () => invoke("history_cancel_export"),
    startLink: () => invoke("start_link"),
    pendingReviews: () => invoke("pending_reviews"),
    reviewRequest: (id) => invoke("review_request", { id }),
    review: (id, concern, comment) => invoke("review", { id, concern, comment }),
    onEvent: (handler) => listen<ConsoleEvent>("console-event", (e) => handler(e.payload)),
    onOpenRequest: (handler) => listen<string | null>("open-request", (e) => handler(e.payload)),
    onDecided: (handler) => listen<[string, DecisionResult]>("decided", (e) => handler(e.payload[0], e.payload[1])),
  };
}
