/**
 * relay-client: the browser side of relay's `/logs` protocol, in one dependency-free module.
 *
 * A practice interview costs money every minute its phone call and model session stay open,
 * and a browser is the least reliable party: tabs close, laptops sleep, networks drop. This
 * module holds the frontend half of relay's "no zombie sessions" contract so an app does not
 * re-derive it from snippets:
 *
 * - one {@link RelayClient} per interview page; one session (a UUID) at a time, replaced whole
 *   by {@link RelayClient.practiceAgain} so nothing of the last interview leaks into the next;
 * - the job configuration is sent on every open and its `job_config.ack` tracked;
 * - unexpected closes are retried with jittered exponential back-off and resume the same
 *   session (relay replays what was missed), but never after the relay said the call ended,
 *   after an intentional close, or when the relay refused us (bad token, another user's session);
 * - {@link RelayClient.dispose} ends the interview and releases every socket, timer and listener;
 *   {@link installUnloadBeacon} and {@link stopAllSessions} cover the cases where no code runs.
 *
 * State is one immutable {@link RelayClientSnapshot}, replaced on every change, so React can
 * bind it with `useSyncExternalStore(client.subscribe, client.getSnapshot)`.
 * The protocol itself is documented in relay's docs/protocol.md; the patterns in docs/frontend.md.
 */

// -- what the UI sees -------------------------------------------------------------------------

/** Where the interview is, as a UI shows it ("Disconnecting…", "Connection lost", …). */
export type RelayState = "idle" | "connecting" | "waiting-for-call" | "in-call" | "disconnecting"
  | "reconnecting" | "connection-lost" | "ended";

/** The interview to run (relay's `job_config.config`; every field optional). */
export interface JobConfig {
  role?: string; company?: string; jobDescription?: string; interviewStyle?: string;
  instructions?: string; voice?: string; candidateName?: string; language?: string;
  durationMinutes?: number;
}

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
}

/** A message from relay: `type` plus whatever fields that type carries. */
export interface RelayMessage {
  readonly type: string;
  readonly [field: string]: unknown;
}

export interface RelayClientEvents {
  /** Anything changed; the new snapshot (what `subscribe` listeners are told about). */
  change: RelayClientSnapshot;
  state: { state: RelayState; previous: RelayState };
  jobConfig: JobConfigStatus;
  transcript: TranscriptItem;
  callStatus: { status: "connected" | "ended"; reason: string | null };
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
  keepalive?: boolean }) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;

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

// -- small pure helpers -------------------------------------------------------------------------

/** Delay before reconnect attempt `attempt` (0-based): exponential, capped, "equal jitter"
 * (half fixed, half random) so a relay restart is not hit by every tab at the same instant. */
export function backoffDelay(attempt: number, policy: Pick<BackoffPolicy, "initialMs" | "maxMs"
  | "factor">, random: () => number = Math.random): number {
  const base = Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, attempt));
  return Math.round(base / 2 + (random() * base) / 2);
}

/** `ws://host` → `http://host`, `wss://host` → `https://host` (trailing slash dropped). */
export function httpBaseFrom(baseUrl: string): string {
  return baseUrl.replace(/^ws(s?):\/\//i, "http$1://").replace(/\/+$/, "");
}

/** Close codes after which retrying cannot help (README "Close codes"): policy violation
 * (another user's session), a second call, and superseded by the user's newer session. */
export const NO_RETRY_CLOSE_CODES: ReadonlySet<number> = new Set([1008, 4009, 4010]);

const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 15_000, factor: 2, maxAttempts: 10 };
const ACTIVITY_EVENTS = ["mousedown", "mousemove", "keydown", "touchstart", "visibilitychange"];
const OPEN = 1;

const defaultClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** A v4 UUID for a session. `crypto.randomUUID` exists only in secure contexts (https,
 * localhost); a dev server opened by LAN address still has `getRandomValues`. */
export function randomSessionId(crypto: Pick<Crypto, "getRandomValues"> & Partial<Pick<Crypto,
  "randomUUID">> = globalThis.crypto): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40; // version 4
  b[8] = (b[8]! & 0x3f) | 0x80; // RFC 4122 variant
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function defaultBeacon(fetcher: FetchLike | undefined): BeaconSender {
  const nav = (globalThis as { navigator?: { sendBeacon?: (url: string) => boolean } }).navigator;
  if (typeof nav?.sendBeacon === "function") return (url) => nav.sendBeacon!(url);
  // keepalive lets the request outlive the page where sendBeacon is missing.
  return (url) => {
    void fetcher?.(url, { method: "POST", keepalive: true }).catch(() => {});
    return true;
  };
}

/** A minimal typed event emitter; a throwing listener is reported, not allowed to break the client. */
export class Emitter<Events extends object> {
  private listeners = new Map<keyof Events, Set<(payload: never) => void>>();

  /** Listen; returns the function that stops listening. */
  on<K extends keyof Events>(type: K, listener: (payload: Events[K]) => void): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(listener as (payload: never) => void);
    return () => { set.delete(listener as (payload: never) => void); };
  }

  emit<K extends keyof Events>(type: K, payload: Events[K]): void {
    for (const listener of [...(this.listeners.get(type) ?? [])]) {
      try {
        (listener as (payload: Events[K]) => void)(payload);
      } catch (error) {
        // Surface it like an uncaught error without unwinding the client's own bookkeeping.
        queueMicrotask(() => { throw error; });
      }
    }
  }

  clear(): void {
    this.listeners.clear();
  }
}

// -- the client ---------------------------------------------------------------------------------

const TRANSCRIPT_DELTA: Record<string, "user" | "assistant"> = {
  "conversation.item.input_audio_transcription.delta": "user",
  "response.output_audio_transcript.delta": "assistant",
  "response.output_text.delta": "assistant",
  "response.audio_transcript.delta": "assistant", // beta dialect
};
const TRANSCRIPT_DONE: Record<string, "user" | "assistant"> = {
  "conversation.item.input_audio_transcription.completed": "user",
  "response.output_audio_transcript.done": "assistant",
  "response.output_text.done": "assistant",
  "response.audio_transcript.done": "assistant", // beta dialect
};

/** One interview page's connection to relay. Create it, `connect()`, `dispose()` on unmount. */
export class RelayClient {
  private readonly emitter = new Emitter<RelayClientEvents>();
  private readonly clock: Clock;
  private readonly backoff: BackoffPolicy;
  private readonly httpBase: string;
  private readonly wsBase: string;
  private readonly fetcher: FetchLike | undefined;
  private readonly beacon: BeaconSender;
  private snap: RelayClientSnapshot;
  private jobConfig: JobConfig | undefined;
  private token: TokenSource | undefined;
  private lastToken: string | undefined;
  private ws: WebSocketLike | null = null;
  /** Bumped whenever a socket is abandoned, so its late events are ignored (no stale state). */
  private generation = 0;
  private everOpened = false;
  private refusals = 0;
  private resumingCall = false;
  private replayLeft = 0;
  private lastActivitySent = Number.NEGATIVE_INFINITY;
  private items: TranscriptItem[] = [];
  private disposed = false;
  private readonly timers = new Map<string, unknown>();
  private readonly cleanups = new Set<() => void>();

  constructor(private readonly options: RelayClientOptions) {
    this.clock = options.clock ?? defaultClock;
    this.backoff = { ...DEFAULT_BACKOFF, ...options.reconnect };
    this.wsBase = options.baseUrl.replace(/^http(s?):\/\//i, "ws$1://").replace(/\/+$/, "");
    this.httpBase = (options.httpBaseUrl ?? httpBaseFrom(options.baseUrl)).replace(/\/+$/, "");
    this.fetcher = options.fetch ?? (globalThis.fetch as FetchLike | undefined)?.bind(globalThis);
    this.beacon = options.sendBeacon ?? defaultBeacon(this.fetcher);
    this.jobConfig = options.jobConfig;
    this.token = options.token;
    this.snap = this.freshSnapshot(options.sessionId ?? (options.newSessionId ?? randomSessionId)());
    const network = options.networkEvents === undefined
      ? (globalThis as { window?: EventTargetLike }).window : options.networkEvents;
    if (network) {
      // The browser knows before our back-off does that the network is back.
      const online = (): void => { if (this.snap.state === "reconnecting") this.reconnectNow(); };
      network.addEventListener("online", online);
      this.cleanups.add(() => network.removeEventListener("online", online));
    }
  }

  // -- reading state --------------------------------------------------------------------

  /** For `useSyncExternalStore`: the same object until something changes. */
  readonly getSnapshot = (): RelayClientSnapshot => this.snap;

  /** For `useSyncExternalStore`: call `listener` on every change; returns the unsubscribe. */
  readonly subscribe = (listener: () => void): (() => void) => this.emitter.on("change", listener);

  on<K extends keyof RelayClientEvents>(type: K, listener: (p: RelayClientEvents[K]) => void): () => void {
    return this.emitter.on(type, listener);
  }

  get sessionId(): string { return this.snap.sessionId; }
  get state(): RelayState { return this.snap.state; }

  /** Whether relay may still hold this session (so leaving must tell it). */
  get sessionMayBeLive(): boolean {
    return !["idle", "ended"].includes(this.snap.state) && !this.disposed;
  }

  /** The beacon-friendly stop endpoint for the current session, credentials in the query. */
  stopUrl(): string {
    const session = encodeURIComponent(this.snap.sessionId);
    return `${this.httpBase}/api/sessions/${session}/stop${this.credentialQuery()}`;
  }

  // -- commands -------------------------------------------------------------------------

  /** Open the session's socket (from `idle`); does nothing if already connecting or connected. */
  connect(): void {
    this.assertAlive();
    this.socketClass(); // fail here, synchronously, rather than inside the async open()
    if (this.snap.state !== "idle") return;
    this.setState("connecting");
    void this.open();
  }

  /** From "connection-lost": try again, same session, with a fresh retry budget. */
  retry(): void {
    this.assertAlive();
    if (this.snap.state !== "connection-lost") return;
    this.refusals = 0;
    this.update({ reconnectAttempt: 0, lastError: null });
    this.setState(this.everOpened ? "reconnecting" : "connecting");
    void this.open();
  }

  /** Store the configuration and send it now if connected (a live call is updated live). */
  sendJobConfig(config: JobConfig): boolean {
    this.jobConfig = config;
    const sent = this.sendJson({ type: "job_config", config });
    if (sent) this.setJobConfig("sending");
    return sent;
  }

  /** Send any message relay accepts from a browser (e.g. `conversation.item.create`). */
  send(message: { type: string; [field: string]: unknown }): boolean {
    return this.sendJson(message);
  }

  /** A token for the next connection and the beacon (call it when your app refreshes tokens). */
  setToken(token: TokenSource): void {
    this.token = token;
    if (typeof token === "string") this.lastToken = token;
  }

  /** The user is here: answers the 8-minute warning ("Continue") at once, unthrottled. */
  continueSession(): boolean {
    const sent = this.sendJson({ type: "activity" });
    if (sent) this.lastActivitySent = this.clock.now();
    return sent;
  }

  /** Listen for user activity on `target` (default `document`) and tell relay, throttled. */
  trackActivity(target?: EventTargetLike): () => void {
    const t = target ?? (globalThis as { document?: EventTargetLike }).document;
    if (!t) return () => {};
    const listener = (event: { type: string }): void => {
      if (event.type === "visibilitychange" && t.visibilityState === "hidden") return;
      this.noteActivity();
    };
    for (const type of ACTIVITY_EVENTS) t.addEventListener(type, listener, { passive: true });
    const remove = (): void => {
      for (const type of ACTIVITY_EVENTS) t.removeEventListener(type, listener);
      this.cleanups.delete(remove);
    };
    this.cleanups.add(remove);
    return remove;
  }

  /** "End interview": ask relay to end it and resolve once ended (closing anyway after
   * `endTimeoutMs`). Shows "disconnecting" meanwhile. */
  endSession(): Promise<void> {
    if (this.disposed || ["idle", "ended"].includes(this.snap.state)) return Promise.resolve();
    const done = new Promise<void>((resolve) => {
      const off = this.emitter.on("state", ({ state }) => {
        if (state === "ended" || state === "idle" || state === "connection-lost") { off(); resolve(); }
      });
    });
    if (this.sendJson({ type: "session.end" })) {
      this.setState("disconnecting");
      this.later("end", this.options.endTimeoutMs ?? 5_000, () => this.finish("frontend_ended"));
    } else {
      this.stopRemotely();
      this.finish("frontend_ended");
    }
    return done;
  }

  /** "Practice again": end whatever is left of this interview, forget all of it, and start a
   * new session (new ID). `config` replaces the job configuration; omitted, it is re-sent. */
  practiceAgain(config?: JobConfig): void {
    this.assertAlive();
    if (config !== undefined) this.jobConfig = config;
    this.leave();
    this.setState("idle");
    this.resetSession((this.options.newSessionId ?? randomSessionId)());
    this.connect();
  }

  /** Unmount: end the interview, close the socket, clear every timer and listener. Idempotent;
   * the client cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.leave();
    this.disposed = true;
    for (const cleanup of [...this.cleanups]) cleanup();
    this.cleanups.clear();
    this.setState("idle");
    this.emitter.clear();
  }

  /** Wire `beforeunload`/`pagehide` here (see {@link installUnloadBeacon}). */
  sendUnloadBeacon(): boolean {
    if (!this.sessionMayBeLive) return false;
    return this.beacon(this.stopUrl());
  }

  /** Register a cleanup to run on dispose (used by {@link installUnloadBeacon}). */
  addCleanup(cleanup: () => void): () => void {
    this.cleanups.add(cleanup);
    return () => { this.cleanups.delete(cleanup); };
  }

  // -- the socket -----------------------------------------------------------------------

  private async open(): Promise<void> {
    const generation = ++this.generation;
    let token: string | undefined;
    try {
      token = typeof this.token === "function" ? await this.token(this.snap.sessionId) : this.token;
    } catch (error) {
      if (generation === this.generation) this.lose({ kind: "token", message: String(error) });
      return;
    }
    if (generation !== this.generation || this.disposed) return;
    this.lastToken = token;
    const Ctor = this.socketClass();
    const query = token ? "" : this.credentialQuery();
    const ws = new Ctor(`${this.wsBase}/logs/${encodeURIComponent(this.snap.sessionId)}${query}`,
      // Browsers cannot set headers on a WebSocket: the token rides as a second subprotocol,
      // and relay only ever selects relay.v1, so the token is never echoed back.
      token ? ["relay.v1", token] : ["relay.v1"]);
    this.ws = ws;
    let opened = false;
    const current = (): boolean => generation === this.generation;
    const failed = (): void => {
      // Node 20's WebSocket reports a refused handshake with `error` and never `close`;
      // browsers send both. Either one ends this attempt, once.
      if (!current() || opened) return;
      this.closeSocket(1000);
      void this.handshakeFailed();
    };
    this.later("connect", this.options.connectTimeoutMs ?? 10_000, failed);
    ws.onopen = () => {
      if (!current()) return;
      opened = true;
      this.cancel("connect");
      this.opened();
    };
    ws.onmessage = (event: { data: unknown }) => { if (current()) this.received(event.data); };
    ws.onerror = () => { if (!opened) failed(); };
    ws.onclose = (event: { code: number; reason: string }) => {
      if (!current()) return;
      if (!opened) return failed();
      this.ws = null;
      this.closedUnexpectedly(event.code, event.reason);
    };
  }

  private opened(): void {
    this.everOpened = true;
    if (this.resumingCall) {
      // relay sends session.associated first when the call is still on; silence means the
      // session ended while we were away and relay just made us a new, empty one.
      this.later("resume", this.options.resumeCheckMs ?? 3_000, () => {
        this.closeSocket(1000);
        this.finish("ended_while_disconnected");
      });
      return;
    }
    this.setState("waiting-for-call");
    if (this.jobConfig) this.sendJobConfig(this.jobConfig);
  }

  private async handshakeFailed(): Promise<void> {
    // The WebSocket API hides the HTTP status. If relay answers plain HTTP, it was relay that
    // said no (401/403/409/429): retrying the same request only adds to a storm.
    const generation = this.generation;
    const reachable = await this.probe();
    if (generation !== this.generation || this.disposed) return;
    if (reachable) {
      this.refusals += 1;
      // A first connection refused stays refused. Once connected, allow one more try: a
      // short-lived token may have expired, or relay has not yet noticed our dead socket.
      if (this.refusals > (this.everOpened ? 1 : 0)) {
        return this.lose({ kind: "refused", message: "relay refused the connection" });
      }
    }
    this.scheduleReconnect();
  }

  private async probe(): Promise<boolean> {
    if (!this.fetcher) return false;
    const timeout = new Promise<boolean>((resolve) => this.later("probe", 3_000, () => resolve(false)));
    const answer = this.fetcher(`${this.httpBase}/health`).then(() => true, () => false);
    const reachable = await Promise.race([answer, timeout]);
    this.cancel("probe");
    return reachable;
  }

  private closedUnexpectedly(code: number, reason: string): void {
    if (this.snap.state === "disconnecting") {
      // We were leaving anyway; make sure relay heard it even if session.end was lost.
      this.stopRemotely();
      return this.finish("frontend_ended");
    }
    if (NO_RETRY_CLOSE_CODES.has(code)) {
      return this.lose({ kind: "closed", code, message: reason || `relay closed the socket (${code})` });
    }
    // A drop during a resume attempt is still a drop from a live call.
    this.resumingCall = this.snap.state === "in-call"
      || (this.snap.state === "reconnecting" && this.resumingCall);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    this.clearWarnings();
    const attempt = this.snap.reconnectAttempt + 1;
    if (attempt > this.backoff.maxAttempts) {
      return this.lose({ kind: "unreachable", message: `no connection after ${attempt - 1} attempts` });
    }
    const delayMs = backoffDelay(attempt - 1, this.backoff, this.options.random);
    this.update({ reconnectAttempt: attempt });
    this.setState("reconnecting");
    this.emitter.emit("reconnecting", { attempt, delayMs });
    this.later("reconnect", delayMs, () => void this.open());
  }

  private reconnectNow(): void {
    if (!this.timers.has("reconnect")) return; // an attempt is already under way
    this.cancel("reconnect");
    void this.open();
  }

  // -- messages from relay ---------------------------------------------------------------

  private received(data: unknown): void {
    let message: RelayMessage;
    try {
      const parsed: unknown = typeof data === "string" ? JSON.parse(data) : null;
      if (!parsed || typeof parsed !== "object" || typeof (parsed as RelayMessage).type !== "string") {
        throw new Error("not a typed JSON object");
      }
      message = parsed as RelayMessage;
    } catch {
      return this.report({ kind: "protocol", message: "relay sent a frame that is not a message" });
    }
    // relay answered, so this connection works: the retry budget starts over.
    if (this.snap.reconnectAttempt) this.update({ reconnectAttempt: 0 });
    this.refusals = 0;
    const replayed = this.replayLeft > 0;
    if (replayed) this.replayLeft -= 1;
    this.emitter.emit("message", message);
    const { type } = message;
    switch (type) {
      case "session.associated":
        this.cancel("resume");
        this.resumingCall = false;
        this.update({ callSid: typeof message.callSid === "string" ? message.callSid : null });
        if (this.snap.state !== "disconnecting") this.setState("in-call");
        return;
      case "call.status_changed":
        return this.callStatus(message);
      case "job_config.ack":
        if (message.status === "queued" || message.status === "applied") this.setJobConfig(message.status);
        return;
      case "session.inactivity_warning":
        // A warning replayed after a reconnect is stale: reconnecting was activity.
        if (!replayed) this.startCountdown("inactivity", Number(message.disconnectInMs));
        return;
      case "session.inactivity_warning_cleared":
        return this.setCountdown("inactivity", null);
      case "session.duration_warning":
        return this.startCountdown("duration", Number(message.endsInMs));
      case "session.resumed": {
        const missed = Number(message.missed) || 0;
        this.replayLeft = missed;
        this.emitter.emit("resumed", { missed, dropped: Number(message.dropped) || 0 });
        return;
      }
      case "error": {
        const code = String(message.code ?? "error");
        if (code === "invalid_job_config" || code === "config_rejected") this.setJobConfig("rejected");
        return this.report({ kind: "server", code, message: String(message.message ?? "") });
      }
      default:
        return this.transcriptEvent(type, message);
    }
  }

  private callStatus(message: RelayMessage): void {
    const reason = typeof message.reason === "string" ? message.reason : null;
    if (message.status === "connected") {
      this.emitter.emit("callStatus", { status: "connected", reason });
      if (this.snap.state !== "disconnecting") this.setState("in-call");
    } else if (message.status === "ended") {
      this.emitter.emit("callStatus", { status: "ended", reason });
      // relay closes right after; closing first means no close event to misread as a drop.
      this.closeSocket(1000);
      this.finish(reason ?? "ended");
    }
  }

  private transcriptEvent(type: string, message: RelayMessage): void {
    const itemId = typeof message.item_id === "string" ? message.item_id : null;
    if (type === "conversation.item.added" || type === "conversation.item.created") {
      // Reserve the item's place: a caller's transcript often completes after the answer began.
      const item = message.item as { id?: unknown; type?: unknown; role?: unknown } | undefined;
      if (item?.type === "message" && typeof item.id === "string"
          && (item.role === "user" || item.role === "assistant")) {
        this.upsert(item.id, item.role, (t) => t, false);
      }
      return;
    }
    const deltaRole = TRANSCRIPT_DELTA[type];
    if (deltaRole && itemId && typeof message.delta === "string") {
      const delta = message.delta;
      return this.upsert(itemId, deltaRole, (text) => text + delta, false);
    }
    const doneRole = TRANSCRIPT_DONE[type];
    if (doneRole && itemId) {
      const text = typeof message.transcript === "string" ? message.transcript : message.text;
      if (typeof text === "string") this.upsert(itemId, doneRole, () => text, true);
    }
  }

  private upsert(id: string, role: TranscriptItem["role"], text: (old: string) => string,
    final: boolean): void {
    const index = this.items.findIndex((item) => item.id === id);
    const old = index >= 0 ? this.items[index] : undefined;
    const item: TranscriptItem = Object.freeze({ id, role, text: text(old?.text ?? ""),
      final: final || (old?.final ?? false) });
    if (old && old.text === item.text && old.final === item.final) return;
    if (old) this.items[index] = item; else this.items.push(item);
    this.update({ transcript: this.items.filter((line) => line.text !== "") });
    if (item.text !== "") this.emitter.emit("transcript", item);
  }

  // -- countdowns ----------------------------------------------------------------------

  private startCountdown(kind: Countdown["kind"], inMs: number): void {
    if (!Number.isFinite(inMs)) return;
    const endsAt = this.clock.now() + Math.max(0, inMs);
    this.setCountdown(kind, { kind, endsAt, remainingMs: Math.max(0, inMs) });
  }

  private setCountdown(kind: Countdown["kind"], countdown: Countdown | null): void {
    const key = kind === "inactivity" ? "inactivityWarning" : "durationWarning";
    if (countdown === null && this.snap[key] === null) return;
    this.update({ [key]: countdown });
    this.emitter.emit("warning", { kind, countdown });
    if (this.snap.inactivityWarning || this.snap.durationWarning) {
      if (!this.timers.has("tick")) this.tick();
    } else {
      this.cancel("tick");
    }
  }

  private tick(): void {
    // Re-render once a second while a countdown shows; relay's own timers decide the end.
    this.later("tick", 1_000, () => {
      const now = this.clock.now();
      for (const countdown of [this.snap.inactivityWarning, this.snap.durationWarning]) {
        if (!countdown) continue;
        this.setCountdown(countdown.kind, { ...countdown, remainingMs: Math.max(0, countdown.endsAt - now) });
      }
      if (this.snap.inactivityWarning || this.snap.durationWarning) this.tick();
    });
  }

  private clearWarnings(): void {
    this.setCountdown("inactivity", null);
    this.setCountdown("duration", null);
  }

  private noteActivity(): void {
    const now = this.clock.now();
    const interval = this.options.activityIntervalMs ?? 15_000;
    // Under a warning every sign of life counts at once; otherwise one message per interval
    // is plenty against a timeout measured in minutes.
    if (!this.snap.inactivityWarning && now - this.lastActivitySent < interval) return;
    if (this.sendJson({ type: "activity" })) this.lastActivitySent = now;
  }

  // -- endings and bookkeeping ------------------------------------------------------------

  /** Leave the current session for good: tell relay (socket or beacon) and drop the socket. */
  private leave(): void {
    const live = this.sessionMayBeLive;
    if (live && !this.sendJson({ type: "session.end" }) && this.everOpened) this.stopRemotely();
    if (live) this.setState("disconnecting");
    this.closeSocket(1000);
    this.clearTimers();
  }

  private stopRemotely(): void {
    try { this.beacon(this.stopUrl()); } catch { /* best effort: relay's timers reap the rest */ }
  }

  /** The end of this connection's story, one way or the other: nothing keeps running. */
  private settle(state: "ended" | "connection-lost"): void {
    this.closeSocket(1000);
    this.clearTimers();
    this.clearWarnings();
    this.setState(state);
  }

  private finish(reason: string): void {
    this.resumingCall = false;
    this.update({ endReason: reason, reconnectAttempt: 0 });
    this.settle("ended");
  }

  /** Give up until the user says `retry()`; `resumingCall` is kept so a retry still checks
   * that the call it left is there. */
  private lose(error: RelayClientError): void {
    this.report(error);
    this.settle("connection-lost");
  }

  private report(error: RelayClientError): void {
    this.update({ lastError: error });
    this.emitter.emit("error", error);
  }

  private resetSession(sessionId: string): void {
    this.generation += 1;
    this.everOpened = false;
    this.refusals = 0;
    this.resumingCall = false;
    this.replayLeft = 0;
    this.items = [];
    this.lastActivitySent = Number.NEGATIVE_INFINITY;
    this.snap = this.freshSnapshot(sessionId, this.snap.state);
    this.emitter.emit("change", this.snap);
  }

  private freshSnapshot(sessionId: string, state: RelayState = "idle"): RelayClientSnapshot {
    return { sessionId, state, callSid: null, jobConfig: "none", transcript: [], inactivityWarning: null,
      durationWarning: null, endReason: null, lastError: null, reconnectAttempt: 0 };
  }

  /** Close the current socket and stop listening to it, so its late events cannot touch the
   * state (the generation bump also voids a pending token lookup). Idempotent. */
  private closeSocket(code: number): void {
    const ws = this.ws;
    this.ws = null;
    this.generation += 1;
    this.cancel("connect");
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(code);
    } catch {
      // Closing a socket that never opened can throw in some engines; it is gone either way.
    }
  }

  private sendJson(message: object): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN || this.disposed) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  private credentialQuery(): string {
    if (this.lastToken) return `?token=${encodeURIComponent(this.lastToken)}`;
    if (typeof this.token === "string") return `?token=${encodeURIComponent(this.token)}`;
    return this.options.userId ? `?userId=${encodeURIComponent(this.options.userId)}` : "";
  }

  private setJobConfig(status: JobConfigStatus): void {
    if (this.snap.jobConfig === status) return;
    this.update({ jobConfig: status });
    this.emitter.emit("jobConfig", status);
  }

  private setState(state: RelayState): void {
    const previous = this.snap.state;
    if (previous === state) return;
    this.update({ state });
    this.emitter.emit("state", { state, previous });
  }

  private update(patch: Partial<RelayClientSnapshot>): void {
    this.snap = Object.freeze({ ...this.snap, ...patch });
    this.emitter.emit("change", this.snap);
  }

  /** A named timer (one per name); every timer is in `timers`, so `clearTimers` misses none. */
  private later(name: string, ms: number, callback: () => void): void {
    this.cancel(name);
    this.timers.set(name, this.clock.setTimeout(() => { this.timers.delete(name); callback(); }, ms));
  }

  private cancel(name: string): void {
    if (this.timers.has(name)) this.clock.clearTimeout(this.timers.get(name));
    this.timers.delete(name);
  }

  private clearTimers(): void {
    for (const handle of this.timers.values()) this.clock.clearTimeout(handle);
    this.timers.clear();
  }

  private socketClass(): WebSocketConstructor {
    const Ctor = this.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) throw new Error("no WebSocket here: pass options.WebSocket (Node 20: --experimental-websocket)");
    return Ctor;
  }

  private assertAlive(): void {
    if (this.disposed) throw new Error("this RelayClient was disposed; create a new one");
  }
}

// -- app-level helpers --------------------------------------------------------------------------

/** When the app loads: end the user's lingering sessions (a crashed tab, a closed laptop).
 * Resolves with how many relay stopped. */
export async function stopAllSessions(options: { baseUrl: string; httpBaseUrl?: string;
  token?: string; userId?: string; fetch?: FetchLike }): Promise<number> {
  const fetcher = options.fetch ?? (globalThis.fetch as FetchLike);
  const base = (options.httpBaseUrl ?? httpBaseFrom(options.baseUrl)).replace(/\/+$/, "");
  const query = !options.token && options.userId ? `?userId=${encodeURIComponent(options.userId)}` : "";
  const response = await fetcher(`${base}/api/sessions/stop_all${query}`, {
    method: "POST",
    headers: options.token ? { Authorization: `Bearer ${options.token}` } : {},
  });
  if (!response.ok) throw new Error(`stop_all failed: HTTP ${response.status}`);
  const body = (await response.json()) as { stopped?: unknown };
  return typeof body.stopped === "number" ? body.stopped : 0;
}

/** On `beforeunload` (and `pagehide`, which mobile browsers fire instead) tell relay to stop the
 * session: React cleanups do not run to completion on a closing tab, a beacon does. Returns the
 * uninstall function; `dispose()` uninstalls too. */
export function installUnloadBeacon(client: RelayClient, target?: EventTargetLike): () => void {
  const t = target ?? (globalThis as { window?: EventTargetLike }).window;
  if (!t) return () => {};
  let sentFor: string | null = null;
  const onUnload = (): void => {
    if (sentFor === client.sessionId) return; // both events fire on a desktop close
    if (client.sendUnloadBeacon()) sentFor = client.sessionId;
  };
  t.addEventListener("beforeunload", onUnload);
  t.addEventListener("pagehide", onUnload);
  const removeCleanup = client.addCleanup(() => uninstall());
  function uninstall(): void {
    t!.removeEventListener("beforeunload", onUnload);
    t!.removeEventListener("pagehide", onUnload);
    removeCleanup();
  }
  return uninstall;
}
