/**
 * One reduction in progress: the draft model, the commands collected on the way, and the steps
 * every transition is built from (bookkeeping, countdowns, endings). state.ts and
 * relay-messages.ts compose these; nothing here decides what an event means.
 */
import { callEnded, connectionGone, sessionLeft } from "./calls.js";
import { freshSnapshot, IDLE_CALL, mayBeLive, TICK_MS, type Command, type Emit, type Link, type Model,
  type TimerName } from "./model.js";
import type { ClientMessage, JobConfig } from "./protocol.js";
import type { CallProgress, Countdown, JobConfigStatus, RelayClientError, RelayClientEvents, RelayClientSnapshot,
  RelayState } from "./types.js";

export const NONE: Link = { kind: "none" };

export class Transition {
  readonly commands: Command[] = [];

  constructor(public model: Model) {}

  // -- countdowns ----------------------------------------------------------------------

  startCountdown(kind: Countdown["kind"], inMs: number, now: number): void {
    if (!Number.isFinite(inMs)) return;
    const remainingMs = Math.max(0, inMs);
    this.setCountdown(kind, { kind, endsAt: now + remainingMs, remainingMs });
  }

  setCountdown(kind: Countdown["kind"], countdown: Countdown | null): void {
    const key = kind === "inactivity" ? "inactivityWarning" : "durationWarning";
    if (countdown === null && this.model.snapshot[key] === null) return;
    this.update({ [key]: countdown });
    this.emit("warning", { kind, countdown });
    // Re-render once a second while a countdown shows; relay's own timers decide the end.
    const { inactivityWarning, durationWarning } = this.model.snapshot;
    if (!inactivityWarning && !durationWarning) this.cancel("tick");
    else if (!this.model.timers.has("tick")) this.arm("tick", TICK_MS);
  }

  tick(now: number): void {
    const { inactivityWarning, durationWarning } = this.model.snapshot;
    for (const countdown of [inactivityWarning, durationWarning]) {
      if (countdown) this.setCountdown(countdown.kind, { ...countdown, remainingMs: Math.max(0, countdown.endsAt - now) });
    }
  }

  clearWarnings(): void {
    this.setCountdown("inactivity", null);
    this.setCountdown("duration", null);
  }

  // -- endings ---------------------------------------------------------------------------

  /** Close the socket (if any) and forget it: its late events no longer match `link`. */
  closeSocket(): void {
    const { kind } = this.model.link;
    this.set({ link: NONE });
    this.cancel("connect");
    if (kind === "token" || kind === "handshake" || kind === "open") this.do({ kind: "close-socket" });
  }

  /** Leave the current session for good: tell relay (socket or beacon) and drop the socket. */
  leave(writable: boolean): void {
    sessionLeft(this);
    if (mayBeLive(this.model.snapshot.state)) {
      if (writable) this.send({ type: "session.end" });
      else if (this.model.standing !== "new") this.do({ kind: "stop-remotely" });
      this.setState("disconnecting");
    }
    this.closeSocket();
    this.cancelTimers();
  }

  /** The end of this connection's story, one way or the other: nothing keeps running. */
  settle(state: "ended" | "connection-lost"): void {
    this.closeSocket();
    this.cancelTimers();
    this.clearWarnings();
    this.setState(state);
  }

  finish(reason: string): void {
    callEnded(this, reason);
    this.set({ rejoin: "session" });
    this.update({ endReason: reason, reconnectAttempt: 0 });
    this.settle("ended");
  }

  /** Give up until the user says `retry()`; `rejoin` is kept so a retry still checks that the
   * call it left is there. */
  lose(error: RelayClientError): void {
    connectionGone(this);
    this.report(error);
    this.settle("connection-lost");
  }

  report(error: RelayClientError): void {
    this.update({ lastError: error });
    this.emit("error", error);
  }

  /** A new session: nothing of the last one carries over but the job configuration. */
  resetSession(sessionId: string): void {
    const { call } = this.model.snapshot;
    this.set({ snapshot: freshSnapshot(sessionId, this.model.snapshot.state), link: NONE, standing: "new",
      rejoin: "session", lines: [], replayLeft: 0, lastActivityAt: Number.NEGATIVE_INFINITY, placing: null });
    if (call !== IDLE_CALL) this.emit("callProgress", IDLE_CALL);
  }

  // -- bookkeeping -----------------------------------------------------------------------

  sendJobConfig(config: JobConfig): void {
    this.send({ type: "job_config", config });
    this.setJobConfig("sending");
  }

  sendActivity(now: number): void {
    this.send({ type: "activity" });
    this.set({ lastActivityAt: now });
  }

  setJobConfig(status: JobConfigStatus): void {
    if (this.model.snapshot.jobConfig === status) return;
    this.update({ jobConfig: status });
    this.emit("jobConfig", status);
  }

  /** Change `snapshot.call` (calls.ts decides how). */
  setCall(patch: Partial<CallProgress>): void {
    const call = Object.freeze({ ...this.model.snapshot.call, ...patch });
    this.update({ call });
    this.emit("callProgress", call);
  }

  setState(state: RelayState): void {
    const previous = this.model.snapshot.state;
    if (previous === state) return;
    this.update({ state });
    this.emit("state", { state, previous });
  }

  arm(timer: TimerName, ms: number): void {
    this.setTimers((timers) => timers.add(timer));
    this.do({ kind: "arm", timer, ms });
  }

  cancel(timer: TimerName): void {
    if (!this.model.timers.has(timer)) return;
    this.setTimers((timers) => timers.delete(timer));
    this.do({ kind: "cancel", timer });
  }

  cancelTimers(): void {
    for (const timer of [...this.model.timers]) this.cancel(timer);
  }

  /** A timer that fired is no longer armed. */
  spent(timer: TimerName): void {
    this.setTimers((timers) => timers.delete(timer));
  }

  private setTimers(change: (timers: Set<TimerName>) => void): void {
    const timers = new Set(this.model.timers);
    change(timers);
    this.set({ timers });
  }

  send(message: ClientMessage): void {
    this.do({ kind: "send", message });
  }

  emit<K extends Emit["type"]>(type: K, payload: RelayClientEvents[K]): void {
    this.do({ kind: "emit", type, payload } as Emit);
  }

  do(command: Command): void {
    this.commands.push(command);
  }

  set(patch: Partial<Model>): void {
    this.model = { ...this.model, ...patch };
  }

  update(patch: Partial<RelayClientSnapshot>): void {
    this.set({ snapshot: Object.freeze({ ...this.model.snapshot, ...patch }) });
  }
}
