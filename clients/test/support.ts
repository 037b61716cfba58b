/**
 * What every test shares: a real relay process on port 0, a simulated Twilio call speaking
 * Twilio's exact Media Streams messages, HS256 tokens minted with node:crypto, a fake clock,
 * a recording WebSocket, and race-free waits (each checks the current state first, then
 * listens; nothing synchronises by sleeping).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { existsSync } from "node:fs";
import type {
  Clock, RelayClient, RelayClientEvents, RelayClientSnapshot, WebSocketConstructor, WebSocketLike,
} from "../relay-client.js";

/** The suite's one time unit, stretched on slow machines like the Python suite's. */
export const SCALE = Number(process.env.RELAY_TEST_TIME_SCALE ?? "1") || 1;
export const t = (ms: number): number => ms * SCALE;
export const WAIT = t(5_000);

export const CLIENTS_DIR = fileURLToPath(new URL("../../", import.meta.url));
export const REPO_DIR = path.resolve(CLIENTS_DIR, "..");
/** The operator token of the relays these tests start (GET /api/sessions needs it). */
const ADMIN_TOKEN = "client-tests-admin-token";

// -- the relay ------------------------------------------------------------------------------

export interface Health {
  sessions: number;
  waitingFrontends: number;
  connections: { call: number; frontend: number; upstream: number };
  endedByReason: Record<string, number>;
}

export class Relay {
  readonly wsUrl: string;
  readonly httpUrl: string;
  private exited: Promise<number | null>;

  constructor(private readonly proc: ChildProcess, readonly port: number, readonly log: string[]) {
    this.wsUrl = `ws://127.0.0.1:${port}`;
    this.httpUrl = `http://127.0.0.1:${port}`;
    this.exited = new Promise((resolve) => proc.once("exit", (code) => resolve(code)));
  }

  async health(): Promise<Health> {
    const response = await fetch(`${this.httpUrl}/health`);
    return (await response.json()) as Health;
  }

  /** Wait until /health satisfies `check` (relay's own view of what is still open). */
  async waitForHealth(check: (h: Health) => boolean, what: string, timeoutMs = WAIT): Promise<Health> {
    const deadline = Date.now() + timeoutMs;
    let last: Health | undefined;
    while (Date.now() < deadline) {
      last = await this.health();
      if (check(last)) return last;
      await new Promise((resolve) => setTimeout(resolve, 20)); // polling interval, not a sync sleep
    }
    throw new Error(`timed out waiting for relay: ${what}; last /health ${JSON.stringify(last)}`);
  }

  /** Wait until relay's live sessions (`GET /api/sessions`, the dashboard's data) satisfy `check`. */
  async waitForSessions(check: (rows: Array<{ sessionId: string; warnings: string[]; frontends: number }>) => boolean,
    what: string, timeoutMs = WAIT): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const response = await fetch(`${this.httpUrl}/api/sessions`,
                                   { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
      const body = (await response.json()) as { sessions: Array<{ sessionId: string; warnings: string[]; frontends: number }> };
      if (check(body.sessions)) return;
      await new Promise((resolve) => setTimeout(resolve, 20)); // polling interval, not a sync sleep
    }
    throw new Error(`timed out waiting for relay: ${what}`);
  }

  /** Nothing left: no session, no connection of any kind. */
  waitIdle(timeoutMs = WAIT): Promise<Health> {
    return this.waitForHealth((h) => h.sessions === 0 && h.waitingFrontends === 0
      && h.connections.call === 0 && h.connections.frontend === 0 && h.connections.upstream === 0,
    "idle", timeoutMs);
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), t(10_000));
    await this.exited;
    clearTimeout(timer);
  }
}

/** Start `python -m relay` on port 0 with the local model and read its port from the log. */
export async function startRelay(env: Record<string, string> = {}): Promise<Relay> {
  const python = process.env.RELAY_PYTHON ?? path.join(REPO_DIR, ".venv", "bin", "python");
  if (!existsSync(python)) throw new Error(`no Python at ${python}: run ./scripts/test once, or set RELAY_PYTHON`);
  const { OPENAI_API_KEY: _key, ...inherited } = process.env;
  const proc = spawn(python, ["-m", "relay"], {
    cwd: REPO_DIR,
    env: {
      ...inherited, PORT: "0", HOST: "127.0.0.1", LOG_FORMAT: "json", RELAY_MODEL: "local",
      RELAY_CONN_RATE_PER_S: "0", RELAY_RESUME_GRACE_S: String(t(1_000) / 1000),
      RELAY_ADMIN_TOKEN: ADMIN_TOKEN, ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const log: string[] = [];
  const lines = createInterface({ input: proc.stderr! });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start:\n${log.join("\n")}`)), WAIT * 2);
    lines.on("line", (line) => {
      log.push(line);
      if (log.length > 400) log.shift();
      try {
        const record = JSON.parse(line) as { event?: string; port?: number };
        if (record.event === "🚀 Relay server listening" && record.port) {
          clearTimeout(timer);
          resolve(record.port);
        }
      } catch {
        // not a JSON line (a traceback): kept in the log for the failure message
      }
    });
    proc.once("exit", (code) => { clearTimeout(timer); reject(new Error(`relay exited (${code}):\n${log.join("\n")}`)); });
  });
  return new Relay(proc, port, log);
}

// -- a simulated Twilio call ----------------------------------------------------------------

interface TwilioMessage { event: string; [field: string]: unknown }

const SAMPLE_RATE = 8000;
const FRAME_BYTES = 160; // 20 ms of 8 kHz μ-law

/** One 16-bit linear sample as G.711 μ-law (the same algorithm as relay/providers/g711.py). */
function ulaw(sample: number): number {
  const magnitude = Math.min(Math.abs(Math.round(sample)), 32635) + 0x84;
  const exponent = Math.floor(Math.log2(magnitude)) - 7;
  const mantissa = (magnitude >> (exponent + 3)) & 0x0f;
  return ((exponent << 4) | mantissa) ^ (sample < 0 ? 0x7f : 0xff);
}

const TONE = Buffer.from(Array.from({ length: SAMPLE_RATE }, (_, n) =>
  ulaw(16000 * Math.sin((2 * Math.PI * 440 * n) / SAMPLE_RATE))));
const SILENCE = Buffer.alloc(FRAME_BYTES, 0xff);

export class SimCall {
  readonly callSid: string;
  readonly streamSid = `MZ${randomBytes(16).toString("hex")}`;
  readonly accountSid = `AC${randomBytes(16).toString("hex")}`;
  readonly received: TwilioMessage[] = [];
  private sequence = 0;
  private chunk = 0;
  private toneOffset = 0;
  private waiters = new Set<() => void>();
  private closed = false;

  private constructor(private readonly ws: WebSocket, callSid?: string) {
    this.callSid = callSid ?? `CA${randomBytes(16).toString("hex")}`;
    ws.onmessage = (event) => {
      const message = JSON.parse(String(event.data)) as TwilioMessage;
      this.received.push(message);
      if (message.event === "mark") {
        // Twilio echoes a mark once the audio before it has played; here, at once.
        this.send({ event: "mark", sequenceNumber: this.next(), streamSid: this.streamSid, mark: message.mark });
      }
      for (const wake of [...this.waiters]) wake();
    };
    ws.onclose = () => { this.closed = true; for (const wake of [...this.waiters]) wake(); };
  }

  /** A stream on `urlPath`; `callSid` for the stream of a call relay placed (its SID). */
  static async connect(relay: Relay, urlPath = "/call", callSid?: string): Promise<SimCall> {
    const ws = new WebSocket(`${relay.wsUrl}${urlPath}`);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error("the call could not connect"));
    });
    return new SimCall(ws, callSid);
  }

  /** `connected` then `start`, with the sessionId as a TwiML <Parameter>, as Twilio sends them. */
  start(sessionId: string): void {
    this.send({ event: "connected", protocol: "Call", version: "1.0.0" });
    this.send({
      event: "start", sequenceNumber: this.next(), streamSid: this.streamSid,
      start: {
        accountSid: this.accountSid, streamSid: this.streamSid, callSid: this.callSid, tracks: ["inbound"],
        mediaFormat: { encoding: "audio/x-mulaw", sampleRate: SAMPLE_RATE, channels: 1 },
        customParameters: { sessionId },
      },
    });
  }

  /** A turn the local model hears: `loud` frames of a 440 Hz tone, then `quiet` of silence. */
  speak(loud = 15, quiet = 30): void {
    for (let i = 0; i < loud + quiet; i++) {
      let payload = SILENCE;
      if (i < loud) {
        payload = TONE.subarray(this.toneOffset, this.toneOffset + FRAME_BYTES);
        this.toneOffset = (this.toneOffset + FRAME_BYTES) % TONE.length;
      }
      this.chunk += 1;
      this.send({
        event: "media", sequenceNumber: this.next(), streamSid: this.streamSid,
        media: { track: "inbound", chunk: String(this.chunk), timestamp: String((this.chunk - 1) * 20),
          payload: payload.toString("base64") },
      });
    }
  }

  /** `stop`, then close: the caller hung up. */
  hangUp(): void {
    if (this.closed) return;
    this.send({ event: "stop", sequenceNumber: this.next(), streamSid: this.streamSid,
      stop: { accountSid: this.accountSid, callSid: this.callSid } });
    this.ws.close(1000);
  }

  close(): void {
    if (!this.closed) this.ws.close(1000);
  }

  /** Wait until the call has received `count` messages of `event` in total. */
  async waitFor(event: string, count = 1, timeoutMs = WAIT): Promise<void> {
    const enough = (): boolean => this.received.filter((m) => m.event === event).length >= count;
    await until(enough, (wake) => { this.waiters.add(wake); return () => this.waiters.delete(wake); },
      `call to receive ${count} ${event}`, timeoutMs);
  }

  private next(): string {
    this.sequence += 1;
    return String(this.sequence);
  }

  private send(message: TwilioMessage): void {
    this.ws.send(JSON.stringify(message));
  }
}

// -- waits ------------------------------------------------------------------------------------

/** Resolve once `check()` holds, re-checking whenever `listen`'s wake-up fires. */
export function until(check: () => boolean, listen: (wake: () => void) => () => void,
  what: string, timeoutMs = WAIT): Promise<void> {
  if (check()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const stop = listen(() => {
      if (!check()) return;
      clearTimeout(timer);
      stop();
      resolve();
    });
    const timer = setTimeout(() => { stop(); reject(new Error(`timed out waiting for ${what}`)); }, timeoutMs);
  });
}

/** Wait until the client's snapshot satisfies `check`; returns that snapshot. */
export async function waitForSnapshot(client: RelayClient, check: (s: RelayClientSnapshot) => boolean,
  what: string, timeoutMs = WAIT): Promise<RelayClientSnapshot> {
  try {
    await until(() => check(client.getSnapshot()), (wake) => client.subscribe(wake), what, timeoutMs);
  } catch (error) {
    throw new Error(`${(error as Error).message}; snapshot ${JSON.stringify(client.getSnapshot())}`);
  }
  return client.getSnapshot();
}

export const waitForState = (client: RelayClient, state: RelayClientSnapshot["state"], timeoutMs = WAIT) =>
  waitForSnapshot(client, (s) => s.state === state, `state ${state}`, timeoutMs);

/** The next `type` event matching `check` (subscribe before causing it). */
export function nextEvent<K extends keyof RelayClientEvents>(client: RelayClient, type: K,
  check: (payload: RelayClientEvents[K]) => boolean = () => true, timeoutMs = WAIT): Promise<RelayClientEvents[K]> {
  return new Promise((resolve, reject) => {
    const off = client.on(type, (payload) => {
      if (!check(payload)) return;
      clearTimeout(timer);
      off();
      resolve(payload);
    });
    const timer = setTimeout(() => { off(); reject(new Error(`timed out waiting for event ${String(type)}`)); }, timeoutMs);
  });
}

// -- tokens, clocks, sockets ------------------------------------------------------------------

export const SECRET = "relay-client-tests-secret-0123456789abcdef";

/** An HS256 JWT exactly as relay/security/auth.py expects it: sub, aud, iat, exp (and sid). */
export function mintJwt(claims: { sub: string; aud?: string; sid?: string; ttlS?: number },
  secret = SECRET): string {
  const now = Math.floor(Date.now() / 1000);
  const encode = (value: object): string => Buffer.from(JSON.stringify(value)).toString("base64url");
  const payload: Record<string, unknown> = { sub: claims.sub, aud: claims.aud ?? "relay", iat: now,
    exp: now + (claims.ttlS ?? 300) };
  if (claims.sid) payload.sid = claims.sid;
  const unsigned = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(payload)}`;
  return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}

/** A clock the test moves by hand; counts pending timers so leaks show. */
export class FakeClock implements Clock {
  private time = 1_000_000;
  private nextId = 1;
  private pending = new Map<number, { at: number; callback: () => void }>();

  now(): number { return this.time; }

  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.pending.set(id, { at: this.time + ms, callback });
    return id;
  }

  clearTimeout(handle: unknown): void { this.pending.delete(handle as number); }

  get pendingTimers(): number { return this.pending.size; }

  /** Move time forward, running every timer that falls due, in order. */
  advance(ms: number): void {
    const target = this.time + ms;
    for (;;) {
      const due = [...this.pending.entries()].filter(([, timer]) => timer.at <= target)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.pending.delete(due[0]);
      this.time = due[1].at;
      due[1].callback();
    }
    this.time = target;
  }
}

/** The platform WebSocket, recording every socket made and every frame sent. */
export function recordingWebSocket(): { WebSocket: WebSocketConstructor; sockets: WebSocket[];
  sent: Array<{ type: string }> } {
  const sockets: WebSocket[] = [];
  const sent: Array<{ type: string }> = [];
  class Recording extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      sockets.push(this);
    }

    override send(data: string): void {
      sent.push(JSON.parse(data) as { type: string });
      super.send(data);
    }
  }
  return { WebSocket: Recording as unknown as WebSocketConstructor, sockets, sent };
}

export const newSessionId = (): string => randomUUID();
export type { WebSocketLike };

/** Real timers, counted: after dispose() nothing may be pending. */
export class CountingClock implements Clock {
  readonly pending = new Set<ReturnType<typeof setTimeout>>();

  now(): number { return Date.now(); }

  setTimeout(callback: () => void, ms: number): unknown {
    const handle = setTimeout(() => { this.pending.delete(handle); callback(); }, ms);
    this.pending.add(handle);
    return handle;
  }

  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as ReturnType<typeof setTimeout>);
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  }
}

/** An EventTarget standing in for `document`/`window`, with a settable visibilityState. */
export class FakeDocument extends EventTarget {
  visibilityState: "visible" | "hidden" = "visible";
  /** Listeners currently added (so a test can see that cleanup removed them). */
  listeners = 0;

  override addEventListener(...args: Parameters<EventTarget["addEventListener"]>): void {
    this.listeners += 1;
    super.addEventListener(...args);
  }

  override removeEventListener(...args: Parameters<EventTarget["removeEventListener"]>): void {
    this.listeners -= 1;
    super.removeEventListener(...args);
  }

  fire(type: string): void {
    this.dispatchEvent(new Event(type));
  }
}
