/**
 * What the reducer (state.ts) works on: the model, the events the I/O shell reports, and the
 * commands it hands back. Plain data; see state.ts for the transitions.
 */
import { DEFAULT_BACKOFF } from "./backoff.js";
import type { ClientMessage, JobConfig, RelayMessage } from "./protocol.js";
import type { Lines } from "./transcript.js";
import type { BackoffPolicy, CallProgress, PlaceCallResult, RelayClientEvents, RelayClientOptions,
  RelayClientSnapshot, RelayState } from "./types.js";

/** Every timer the client runs; each is armed and cancelled by a command, one at a time per name. */
export type TimerName =
  | "connect"   // the handshake takes too long
  | "probe"     // GET /health after a failed handshake takes too long
  | "reconnect" // the back-off before the next attempt
  | "resume"    // after reconnecting to a live call, relay has not confirmed it
  | "end"       // endSession(): relay has not said `ended`
  | "tick";     // re-render a countdown

/** Where the socket is. Every socket has an attempt number; an event carrying another number
 * is from a socket already abandoned and changes nothing. */
export type Link =
  | { readonly kind: "none" }
  | { readonly kind: "token"; readonly attempt: number }     // waiting for the token source
  | { readonly kind: "handshake"; readonly attempt: number } // socket made, not open yet
  | { readonly kind: "open"; readonly attempt: number }
  | { readonly kind: "probing"; readonly attempt: number }   // handshake failed: did relay refuse?
  | { readonly kind: "backoff" };                            // waiting for the reconnect timer

/** How a refused handshake is read, from what this session's sockets have been through:
 * `new`: none opened yet, a refusal is final; `opened`: one did, so one refusal may be an
 * expired token and earns a retry; `refused-once`: that retry was refused too since relay
 * last sent anything, the next refusal is final. */
export type Standing = "new" | "opened" | "refused-once";

/** What a reconnect returns to: a `session` still waiting for its call (configure it again)
 * or a live `call` (relay must confirm it with `session.associated`). */
export type Rejoin = "session" | "call";

/** A `placeCall()` relay has not answered yet: `waiting` for the socket to open (progress
 * arrives on it, so the POST goes after), or `posting`. One at a time: two POSTs in flight
 * could both reach Twilio before relay knows of either call. */
export interface Placing {
  readonly request: number;
  readonly to: string;
  readonly stage: "waiting" | "posting";
}

/** The knobs, resolved from the options (the defaults are documented on RelayClientOptions). */
export interface Settings {
  readonly backoff: BackoffPolicy;
  readonly activityIntervalMs: number;
  readonly connectTimeoutMs: number;
  readonly resumeCheckMs: number;
  readonly endTimeoutMs: number;
}

export interface Model {
  readonly settings: Settings;
  /** What the UI sees; `snapshot.state` is the client's state. */
  readonly snapshot: RelayClientSnapshot;
  readonly link: Link;
  /** Sockets opened so far, the last one's attempt number. */
  readonly attempts: number;
  /** The timers armed now (the shell holds their handles). */
  readonly timers: ReadonlySet<TimerName>;
  readonly standing: Standing;
  readonly rejoin: Rejoin;
  /** Sent on every open of a session still waiting for its call. */
  readonly jobConfig: JobConfig | undefined;
  readonly lines: Lines;
  /** Messages of relay's replay still to come (a replayed warning is stale). */
  readonly replayLeft: number;
  /** When the last `activity` message went out. */
  readonly lastActivityAt: number;
  readonly placing: Placing | null;
}

/** What happened, with the facts the reducer needs: the time, a random draw for the back-off
 * jitter, and whether the socket is open for a send (`writable`). */
export type ClientEvent =
  // the app called a method
  | { readonly kind: "connect" }
  | { readonly kind: "retry" }
  | { readonly kind: "send-job-config"; readonly config: JobConfig; readonly writable: boolean }
  | { readonly kind: "continue"; readonly now: number; readonly writable: boolean }
  | { readonly kind: "user-active"; readonly now: number; readonly writable: boolean }
  | { readonly kind: "end-session"; readonly writable: boolean }
  | { readonly kind: "practice-again"; readonly sessionId: string; readonly config: JobConfig | undefined;
      readonly writable: boolean }
  | { readonly kind: "dispose"; readonly writable: boolean }
  | { readonly kind: "place-call"; readonly request: number; readonly to: string }
  // relay answered a `post-call` (or it failed on the way)
  | { readonly kind: "call-answered"; readonly request: number; readonly result: PlaceCallResult }
  // the browser says the network is back
  | { readonly kind: "online" }
  // the socket of attempt `attempt`
  | { readonly kind: "token-failed"; readonly attempt: number; readonly message: string }
  | { readonly kind: "socket-created"; readonly attempt: number }
  | { readonly kind: "socket-opened"; readonly attempt: number }
  | { readonly kind: "socket-error"; readonly attempt: number }
  | { readonly kind: "socket-message"; readonly attempt: number; readonly message: RelayMessage | null;
      readonly now: number }
  | { readonly kind: "socket-closed"; readonly attempt: number; readonly code: number; readonly reason: string;
      readonly jitter: number }
  | { readonly kind: "probed"; readonly attempt: number; readonly reachable: boolean; readonly jitter: number }
  // a timer fired
  | { readonly kind: "timer"; readonly timer: TimerName; readonly now: number; readonly jitter: number };

/** An event for the app's listeners (`change` is the shell's: it follows every new snapshot;
 * so is `message`: it comes before the client acts on it). */
export type Emit = { [K in Exclude<keyof RelayClientEvents, "change" | "message">]:
  { readonly kind: "emit"; readonly type: K; readonly payload: RelayClientEvents[K] } }[
  Exclude<keyof RelayClientEvents, "change" | "message">];

/** What the shell does, in order. */
export type Command =
  | { readonly kind: "open"; readonly attempt: number; readonly sessionId: string } // token, then socket
  | { readonly kind: "close-socket" }   // close it and stop listening; voids a pending token
  | { readonly kind: "send"; readonly message: ClientMessage }
  | { readonly kind: "probe"; readonly attempt: number } // GET /health, answered with `probed`
  | { readonly kind: "stop-remotely" }  // the beacon to /api/sessions/{id}/stop
  // POST /api/calls, answered with `call-answered`
  | { readonly kind: "post-call"; readonly request: number; readonly sessionId: string; readonly to: string }
  | { readonly kind: "settle-call"; readonly request: number; readonly result: PlaceCallResult } // placeCall() resolves
  | { readonly kind: "arm"; readonly timer: TimerName; readonly ms: number }
  | { readonly kind: "cancel"; readonly timer: TimerName }
  | Emit;

export const PROBE_TIMEOUT_MS = 3_000;
export const TICK_MS = 1_000;

export function settingsFrom(options: RelayClientOptions): Settings {
  return {
    backoff: { ...DEFAULT_BACKOFF, ...options.reconnect },
    activityIntervalMs: options.activityIntervalMs ?? 15_000,
    connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
    resumeCheckMs: options.resumeCheckMs ?? 3_000,
    endTimeoutMs: options.endTimeoutMs ?? 5_000,
  };
}

/** No call asked for. */
export const IDLE_CALL: CallProgress = Object.freeze({ phase: "idle", to: null, callSid: null, endReason: null,
  error: null });

export function freshSnapshot(sessionId: string, state: RelayState = "idle"): RelayClientSnapshot {
  return Object.freeze({ sessionId, state, callSid: null, jobConfig: "none", transcript: [],
    inactivityWarning: null, durationWarning: null, endReason: null, lastError: null, reconnectAttempt: 0,
    call: IDLE_CALL });
}

/** A client that has not connected yet. */
export function initialModel(settings: Settings, sessionId: string, jobConfig?: JobConfig): Model {
  return { settings, snapshot: freshSnapshot(sessionId), link: { kind: "none" }, attempts: 0,
    timers: new Set(), standing: "new", rejoin: "session", jobConfig, lines: [], replayLeft: 0,
    lastActivityAt: Number.NEGATIVE_INFINITY, placing: null };
}

/** Whether relay may still hold this session (so leaving must tell it). */
export function mayBeLive(state: RelayState): boolean {
  return state !== "idle" && state !== "ended";
}
