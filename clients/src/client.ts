/**
 * The I/O shell around the reducer (state.ts): it owns the socket (socket.ts), the timers,
 * fetch, the beacon and the listeners, turns what happens to them into events, and performs
 * the commands the reducer returns. It makes no decision of its own about the session.
 */
import { credentialQuery, healthUrl, httpBaseFrom, logsUrl, requestCall, stopUrl, wsBaseFrom } from "./api.js";
import { Emitter } from "./emitter.js";
import {
  defaultClock, pageBeacon, pageDocument, pageFetch, pageWebSocket, pageWindow, randomSessionId,
} from "./environment.js";
import { initialModel, mayBeLive, settingsFrom, type ClientEvent, type Command, type Model,
  type TimerName } from "./model.js";
import { SUBPROTOCOL, type JobConfig } from "./protocol.js";
import { AttemptSocket } from "./socket.js";
import { reduce } from "./state.js";
import type {
  BeaconSender, Clock, EventTargetLike, FetchLike, PlaceCallResult, RelayClientEvents, RelayClientOptions,
  RelayClientSnapshot, RelayState, TokenSource, WebSocketConstructor, WebSocketLike,
} from "./types.js";

const ACTIVITY_EVENTS = ["mousedown", "mousemove", "keydown", "touchstart", "visibilitychange"];

/** One interview page's connection to relay. Create it, `connect()`, `dispose()` on unmount. */
export class RelayClient {
  private readonly emitter = new Emitter<RelayClientEvents>();
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly httpBase: string;
  private readonly wsBase: string;
  private readonly fetcher: FetchLike | undefined;
  private readonly beacon: BeaconSender;
  private model: Model;
  private token: TokenSource | undefined;
  private lastToken: string | undefined;
  private readonly socket = new AttemptSocket({
    dispatch: (event) => this.dispatch(event),
    message: (message) => this.emitter.emit("message", message),
    now: () => this.clock.now(),
    random: () => this.random(),
  });
  private readonly timers = new Map<TimerName, unknown>();
  /** Events waiting for the one before them to be fully performed. */
  private readonly inbox: ClientEvent[] = [];
  private readonly cleanups = new Set<() => void>();
  /** placeCall() promises, by request number, until the reducer settles them. */
  private readonly placeCalls = new Map<number, (result: PlaceCallResult) => void>();
  private callRequests = 0;
  /** Terminal: set by dispose(), after which every method refuses or does nothing. */
  private disposed = false;

  constructor(private readonly options: RelayClientOptions) {
    this.clock = options.clock ?? defaultClock;
    this.random = options.random ?? Math.random;
    this.wsBase = wsBaseFrom(options.baseUrl);
    this.httpBase = (options.httpBaseUrl ?? httpBaseFrom(options.baseUrl)).replace(/\/+$/, "");
    this.fetcher = options.fetch ?? pageFetch();
    this.beacon = options.sendBeacon ?? pageBeacon(this.fetcher);
    this.token = options.token;
    const sessionId = options.sessionId ?? (options.newSessionId ?? randomSessionId)();
    this.model = initialModel(settingsFrom(options), sessionId, options.jobConfig);
    const network = options.networkEvents === undefined ? pageWindow() : options.networkEvents;
    if (network) {
      const online = (): void => this.dispatch({ kind: "online" });
      network.addEventListener("online", online);
      this.cleanups.add(() => network.removeEventListener("online", online));
    }
  }

  // -- reading state --------------------------------------------------------------------

  /** For `useSyncExternalStore`: the same object until something changes. */
  readonly getSnapshot = (): RelayClientSnapshot => this.model.snapshot;

  /** For `useSyncExternalStore`: call `listener` on every change; returns the unsubscribe. */
  readonly subscribe = (listener: () => void): (() => void) => this.emitter.on("change", listener);

  on<K extends keyof RelayClientEvents>(type: K, listener: (p: RelayClientEvents[K]) => void): () => void {
    return this.emitter.on(type, listener);
  }

  get sessionId(): string { return this.model.snapshot.sessionId; }
  get state(): RelayState { return this.model.snapshot.state; }

  /** Whether relay may still hold this session (so leaving must tell it). */
  get sessionMayBeLive(): boolean {
    return !this.disposed && mayBeLive(this.model.snapshot.state);
  }

  /** The beacon-friendly stop endpoint for the current session, credentials in the query. */
  stopUrl(): string {
    return stopUrl(this.httpBase, this.model.snapshot.sessionId, this.credentials());
  }

  // -- commands -------------------------------------------------------------------------

  /** Open the session's socket (from `idle`); does nothing if already connecting or connected. */
  connect(): void {
    this.assertAlive();
    this.socketClass(); // fail here, synchronously, rather than inside the async open()
    this.dispatch({ kind: "connect" });
  }

  /** From "connection-lost": try again, same session, with a fresh retry budget. */
  retry(): void {
    this.assertAlive();
    this.dispatch({ kind: "retry" });
  }

  /** Store the configuration and send it now if connected (a live call is updated live). */
  sendJobConfig(config: JobConfig): boolean {
    if (this.disposed) return false;
    const writable = this.writable();
    this.dispatch({ kind: "send-job-config", config, writable });
    return writable;
  }

  /** Send any message relay accepts from a browser (e.g. `conversation.item.create`). */
  send(message: { type: string; [field: string]: unknown }): boolean {
    if (!this.writable()) return false;
    this.socket.write(message);
    return true;
  }

  /** A token for the next connection and the beacon (call it when your app refreshes tokens). */
  setToken(token: TokenSource): void {
    this.token = token;
    if (typeof token === "string") this.lastToken = token;
  }

  /** The user is here: answers the 8-minute warning ("Continue") at once, unthrottled. */
  continueSession(): boolean {
    if (this.disposed) return false;
    const writable = this.writable();
    this.dispatch({ kind: "continue", now: this.clock.now(), writable });
    return writable;
  }

  /** Listen for user activity on `target` (default `document`) and tell relay, throttled. */
  trackActivity(target?: EventTargetLike): () => void {
    const t = target ?? pageDocument();
    if (!t) return () => {};
    const listener = (event: { type: string }): void => {
      if (event.type === "visibilitychange" && t.visibilityState === "hidden") return;
      if (!this.disposed) this.dispatch({ kind: "user-active", now: this.clock.now(), writable: this.writable() });
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
    if (!this.sessionMayBeLive) return Promise.resolve();
    const done = new Promise<void>((resolve) => {
      const off = this.emitter.on("state", ({ state }) => {
        if (state === "ended" || state === "idle" || state === "connection-lost") { off(); resolve(); }
      });
    });
    this.dispatch({ kind: "end-session", writable: this.writable() });
    return done;
  }

  /** "Call me": ask relay to place this session's interview call to `to` (E.164, e.g.
   * `+15551234567`) through `POST /api/calls`, with the same credentials as the socket (the
   * token source is asked for a token, or `userId` in development mode).
   *
   * The call's progress arrives on the session's socket, so the POST waits for it: an `idle`
   * client connects first, one connecting or reconnecting posts once the socket opens.
   * `snapshot.call` shows the progress (`placing`, `queued`, `ringing`, `in-progress`,
   * `connected`, then `ended` with its reason), and the `callProgress` event follows it.
   *
   * Resolves with relay's answer (`ok: true`, the call SID) or its refusal (`ok: false`, relay's
   * `error` code and message: what to fix); never rejects. Refused without asking relay when the
   * interview has ended, the connection is lost, or this client is placing a call already.
   * A refused call shows in `snapshot.call` (`refused`) unless a call is under way: that one
   * keeps its progress. Throws only when the client was disposed. */
  placeCall(to: string): Promise<PlaceCallResult> {
    this.assertAlive();
    if (this.model.snapshot.state === "idle") this.socketClass(); // fail here, as connect() does
    const request = ++this.callRequests;
    const settled = new Promise<PlaceCallResult>((resolve) => this.placeCalls.set(request, resolve));
    this.dispatch({ kind: "place-call", request, to });
    return settled;
  }

  /** "Practice again": end whatever is left of this interview, forget all of it, and start a
   * new session (new ID). `config` replaces the job configuration; omitted, it is re-sent. */
  practiceAgain(config?: JobConfig): void {
    this.assertAlive();
    this.socketClass();
    const sessionId = (this.options.newSessionId ?? randomSessionId)();
    this.dispatch({ kind: "practice-again", sessionId, config, writable: this.writable() });
  }

  /** Unmount: end the interview, close the socket, clear every timer and listener. Idempotent;
   * the client cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.dispatch({ kind: "dispose", writable: this.writable() });
    this.disposed = true;
    for (const cleanup of [...this.cleanups]) cleanup();
    this.cleanups.clear();
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

  // -- the reducer's door -----------------------------------------------------------------

  /** Reduce `event` and perform the commands. An event raised while commands run (a listener
   * calling back in, a socket made synchronously) waits its turn, so every transition starts
   * from the state the previous one left and its commands run in full. */
  private dispatch(event: ClientEvent): void {
    if (this.inbox.push(event) > 1) return;
    try {
      while (this.inbox.length > 0) {
        const before = this.model.snapshot;
        const [model, commands] = reduce(this.model, this.inbox[0]!);
        this.model = model;
        if (model.snapshot !== before) this.emitter.emit("change", model.snapshot);
        for (const command of commands) this.perform(command);
        this.inbox.shift();
      }
    } finally {
      this.inbox.length = 0;
    }
  }

  private perform(command: Command): void {
    switch (command.kind) {
      case "open": {
        const { attempt, sessionId } = command;
        const token = () => (typeof this.token === "function" ? this.token(sessionId) : this.token);
        return void this.socket.open(attempt, token, (resolved) => this.connectSocket(sessionId, resolved));
      }
      case "close-socket": return this.socket.close();
      case "send": return this.socket.write(command.message);
      case "probe": return void this.probe(command.attempt);
      case "stop-remotely": return this.stopRemotely();
      case "post-call": return void this.postCall(command.request, command.sessionId, command.to);
      case "settle-call": {
        const resolve = this.placeCalls.get(command.request);
        this.placeCalls.delete(command.request);
        return resolve?.(command.result);
      }
      case "arm": return this.arm(command.timer, command.ms);
      case "cancel": return this.cancel(command.timer);
      case "emit":
        return (this.emitter.emit as (type: string, payload: unknown) => void).call(this.emitter,
          command.type, command.payload);
      default: {
        const never: never = command;
        throw new Error(`unknown command ${JSON.stringify(never)}`);
      }
    }
  }

  // -- the socket -----------------------------------------------------------------------

  /** The socket for a token: the token rides as a second subprotocol (browsers cannot set
   * headers on a WebSocket), and relay only ever selects relay.v1, so it is never echoed back. */
  private connectSocket(sessionId: string, token: string | undefined): WebSocketLike {
    this.lastToken = token;
    const query = token ? "" : this.credentials();
    const Ctor = this.socketClass();
    return new Ctor(logsUrl(this.wsBase, sessionId, query), token ? [SUBPROTOCOL, token] : [SUBPROTOCOL]);
  }

  private writable(): boolean {
    return !this.disposed && this.socket.isOpen;
  }

  /** Is relay there at all? (An answer means it refused our handshake.) */
  private async probe(attempt: number): Promise<void> {
    let reachable = false;
    if (this.fetcher) {
      try {
        await this.fetcher(healthUrl(this.httpBase));
        reachable = true;
      } catch {
        // unreachable: the network, not relay
      }
    }
    this.dispatch({ kind: "probed", attempt, reachable, jitter: this.random() });
  }

  /** POST /api/calls; relay's answer (or why there is none) goes back to the reducer. */
  private async postCall(request: number, sessionId: string, to: string): Promise<void> {
    const token = () => (typeof this.token === "function" ? this.token(sessionId) : this.token);
    const result = await requestCall({ httpBase: this.httpBase, sessionId, to, token, userId: this.options.userId,
      fetch: this.fetcher });
    this.dispatch({ kind: "call-answered", request, result });
  }

  private stopRemotely(): void {
    try { this.beacon(this.stopUrl()); } catch { /* best effort: relay's timers reap the rest */ }
  }

  private credentials(): string {
    const token = this.lastToken || (typeof this.token === "string" ? this.token : undefined);
    return credentialQuery({ token, userId: this.options.userId });
  }

  // -- timers ---------------------------------------------------------------------------

  private arm(timer: TimerName, ms: number): void {
    this.cancel(timer);
    this.timers.set(timer, this.clock.setTimeout(() => {
      this.timers.delete(timer);
      this.dispatch({ kind: "timer", timer, now: this.clock.now(), jitter: this.random() });
    }, ms));
  }

  private cancel(timer: TimerName): void {
    if (this.timers.has(timer)) this.clock.clearTimeout(this.timers.get(timer));
    this.timers.delete(timer);
  }

  private socketClass(): WebSocketConstructor {
    const Ctor = this.options.WebSocket ?? pageWebSocket();
    if (!Ctor) throw new Error("no WebSocket here: pass options.WebSocket (Node 20: --experimental-websocket)");
    return Ctor;
  }

  private assertAlive(): void {
    if (this.disposed) throw new Error("this RelayClient was disposed; create a new one");
  }
}
