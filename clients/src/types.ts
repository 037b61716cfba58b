/**
 * The public types: what the UI sees (the snapshot and the events) and what the client needs
 * from its environment (injectable for tests and server-side rendering).
 */
import type { JobConfig, RelayMessage } from "./protocol.js";

// -- what the UI sees -------------------------------------------------------------------------

/** Where the interview is, as a UI shows it ("Disconnecting…", "Connection lost", …). */
export type RelayState = "idle" | "connecting" | "waiting-for-call" | "in-call" | "disconnecting"
  | "reconnecting" | "connection-lost" | "ended";

/** `sending` until relay answers; `queued` before the call; `applied` once the model has it. */
export type JobConfigStatus = "none" | "sending" | "queued" | "applied" | "rejected";

/** One line of the live transcript; `final` once the model's `…done`/`…completed` arrived. */
export interface TranscriptItem {
  readonly id: string; readonly role: "user" | "assistant"; readonly text: string; readonly final: boolean;
}

/** A warning with a deadline: relay ends the session (or it hits its cap) at `endsAt`. */
export interface Countdown {
  readonly kind: "inactivity" | "duration";
  /** Clock time (ms) when the session ends unless something happens. */
  readonly endsAt: number;
  readonly remainingMs: number;
}

/** Why the client is not where the user wanted it to be. */
export interface RelayClientError {
  /** refused: relay answered the handshake with an error (token, owner, capacity);
   * unreachable: no connection after every retry; closed: relay closed with a no-retry code;
   * server: an `error` message from relay; token: the token source failed; protocol: bad frame. */
  readonly kind: "refused" | "unreachable" | "closed" | "server" | "token" | "protocol";
  readonly code?: string | number;
  readonly message: string;
}

// -- the interview call relay places ("Call me", docs/protocol.md "Outbound calls") ----------

/** Where the call relay places for this session is (`snapshot.call.phase`):
 *
 * - `idle`: no call asked for in this session (or the session's call came in by itself);
 * - `placing`: `placeCall()` is waiting for the socket, or for relay's answer to the POST;
 * - `queued`, `initiated`, `ringing`, `in-progress`: Twilio's progress in its own words
 *   (`in-progress`: someone picked up);
 * - `connected`: the call's audio stream started: the interview is on;
 * - `ended`: the call is over; `endReason` says why (`no_answer`, `busy`, `voicemail`, …);
 * - `refused`: the call was not placed; `error` says why, in relay's words. */
export type CallPhase = "idle" | "placing" | "queued" | "initiated" | "ringing" | "in-progress" | "connected"
  | "ended" | "refused";

/** Why a call was not placed: relay's `error` code (with its HTTP status), or one of the
 * client's own (status `null`): `call_in_progress` (this client is placing one already),
 * `session_ended` (the interview ended first), `not_connected` (no socket: the connection was
 * lost, or the interview was left, before the call could be asked for), `unreachable` (the
 * POST did not reach relay), `token` (the token source failed). */
export type PlaceCallErrorCode =
  // the request: fix the number, or start a new session
  | "bad_request" | "bad_session_id" | "invalid_number" | "destination_not_allowed" | "unreachable_number"
  | "unverified_number" | "number_not_allowed"
  // who asks, and when
  | "unauthorized" | "forbidden" | "call_in_progress" | "session_ended" | "rate_limited"
  // the operator's to fix
  | "not_configured" | "twilio_auth" | "bad_from_number" | "twilio_unavailable" | "twilio_refused"
  // the client's own
  | "not_connected" | "unreachable" | "token"
  // anything else relay may answer (a proxy's refusal, a future code)
  | (string & {});

/** A refused `placeCall()`: relay's code and message (what to fix, safe to show). */
export interface PlaceCallError {
  readonly code: PlaceCallErrorCode;
  readonly message: string;
  /** relay's HTTP status (400, 401, 403, 409, 429, 502, 503); `null` when the client refused
   * by itself or never got an answer. */
  readonly status: number | null;
}

/** What `placeCall()` resolves with; it never rejects for a refusal. */
export type PlaceCallResult =
  | { readonly ok: true; readonly callSid: string; readonly sessionId: string; readonly status: string }
  | { readonly ok: false; readonly error: PlaceCallError };

/** The call relay places for this session, as a UI shows it ("Calling you…", "No answer"). */
export interface CallProgress {
  readonly phase: CallPhase;
  /** The number `placeCall()` was given. */
  readonly to: string | null;
  /** Twilio's call SID, once relay has answered the POST. */
  readonly callSid: string | null;
  /** Set with `ended`: relay's reason (`no_answer`, `busy`, `call_failed`, `canceled`,
   * `voicemail`, or any session end reason such as `caller_hung_up`). */
  readonly endReason: string | null;
  /** Set with `refused`. */
  readonly error: PlaceCallError | null;
}

export interface RelayClientSnapshot {
  readonly sessionId: string;
  readonly state: RelayState;
  readonly callSid: string | null;
  readonly jobConfig: JobConfigStatus;
  /** Lines with text, in conversation order. */
  readonly transcript: readonly TranscriptItem[];
  readonly inactivityWarning: Countdown | null;
  readonly durationWarning: Countdown | null;
  /** relay's `reason` (`caller_hung_up`, `stopped`, …) or `ended_while_disconnected`. */
  readonly endReason: string | null;
  readonly lastError: RelayClientError | null;
  /** Reconnect attempts since the last good message (0 when connected). */
  readonly reconnectAttempt: number;
  /** The call relay places for this session (`placeCall()`); `idle` until one is asked for. */
  readonly call: CallProgress;
}

export interface RelayClientEvents {
  /** Anything changed; the new snapshot (what `subscribe` listeners are told about). */
  change: RelayClientSnapshot;
  state: { state: RelayState; previous: RelayState };
  jobConfig: JobConfigStatus;
  transcript: TranscriptItem;
  callStatus: { status: "connected" | "ended"; reason: string | null };
  /** `snapshot.call` changed (a placed call's progress, its end, or a refusal). */
  callProgress: CallProgress;
  /** A countdown started, ticked (once a second) or was cleared (`countdown: null`). */
  warning: { kind: Countdown["kind"]; countdown: Countdown | null };
  resumed: { missed: number; dropped: number };
  reconnecting: { attempt: number; delayMs: number };
  error: RelayClientError;
  /** Every message from relay, parsed, before the client acts on it. */
  message: RelayMessage;
}

// -- what the client needs from its environment (injectable for tests and SSR) -----------------

/** The part of the WebSocket API the client uses (browsers' and Node's global WebSocket fit). */
export interface WebSocketLike {
  readonly readyState: number;
  // `any` events: DOM's handler types (MessageEvent, CloseEvent) must stay assignable here.
  onopen: ((event: any) => unknown) | null;
  onmessage: ((event: any) => unknown) | null;
  onerror: ((event: any) => unknown) | null;
  onclose: ((event: any) => unknown) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Timers and time, so tests can drive throttling and countdowns without sleeping. */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export type FetchLike = (url: string, init?: { method?: string; headers?: Record<string, string>;
  body?: string; keepalive?: boolean }) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;

/** `navigator.sendBeacon`'s shape: fire-and-forget, works while the page unloads. */
export type BeaconSender = (url: string) => boolean;

/** Anything with add/removeEventListener: `document`, `window`, or a test's EventTarget. */
export interface EventTargetLike {
  addEventListener(type: string, listener: (event: { type: string }) => void, options?: object): void;
  removeEventListener(type: string, listener: (event: { type: string }) => void): void;
  readonly visibilityState?: string;
}

/** A token, or a function minting one per connection (tokens are short-lived; `sid`-bound
 * tokens must name the session, hence the argument). */
export type TokenSource = string | ((sessionId: string) => string | Promise<string>);

/** `maxAttempts`: retries after an unexpected close before giving up ("connection-lost"). */
export interface BackoffPolicy { initialMs: number; maxMs: number; factor: number; maxAttempts: number }

export interface RelayClientOptions {
  /** relay's WebSocket origin, e.g. `process.env.NEXT_PUBLIC_WEBSOCKET_SERVER_URL`. */
  baseUrl: string;
  /** relay's HTTP origin; derived from `baseUrl` (ws→http, wss→https) when omitted. */
  httpBaseUrl?: string;
  /** With `RELAY_AUTH_SECRET` on the relay: the user's token (see docs/frontend.md). */
  token?: TokenSource;
  /** Development mode only (no auth on the relay): who the user is. */
  userId?: string;
  jobConfig?: JobConfig;
  /** The first session's ID; a fresh UUID when omitted. */
  sessionId?: string;
  WebSocket?: WebSocketConstructor; fetch?: FetchLike; sendBeacon?: BeaconSender;
  reconnect?: Partial<BackoffPolicy>;
  /** At most one `activity` message per this many ms (default 15 000). */
  activityIntervalMs?: number;
  /** A handshake taking longer than this counts as failed (default 10 000). */
  connectTimeoutMs?: number;
  /** After reconnecting to a live call, how long to wait for relay's `session.associated`
   * before concluding the session ended while we were away (default 3 000). */
  resumeCheckMs?: number;
  /** How long `endSession()` waits for relay's `ended` before closing anyway (default 5 000). */
  endTimeoutMs?: number;
  clock?: Clock; random?: () => number; newSessionId?: () => string;
  /** Where `online` events come from (retry at once when the network is back); `window`. */
  networkEvents?: EventTargetLike | null;
}
