/**
 * The client's decisions, free of I/O: `reduce(model, event)` returns the next model and the
 * commands for the shell (client.ts) to perform; the steps it composes are in transition.ts,
 * what relay's messages do in relay-messages.ts. Nothing here touches a socket, a clock or a
 * timer; time and chance arrive inside events, so every transition is testable without a relay.
 *
 * `snapshot.state`, and what moves it:
 *
 * | from                     | event                                                   | to               |
 * |--------------------------|---------------------------------------------------------|------------------|
 * | idle                     | connect, placeCall                                      | connecting       |
 * | connecting, reconnecting | socket open (not resuming a call)                       | waiting-for-call |
 * | waiting-for-call, reconnecting | `session.associated`, `call.status_changed: connected` | in-call    |
 * | any with a socket        | unexpected close; failed handshake relay did not refuse | reconnecting     |
 * | any with a socket        | attempts used up, a refusal, a no-retry close, no token | connection-lost  |
 * | connection-lost          | retry                                                   | (re)connecting   |
 * | any live                 | endSession: socket open / no socket (beacon)            | disconnecting / ended |
 * | disconnecting            | `call.status_changed: ended`, close, end timer          | ended            |
 * | any live                 | `call.status_changed: ended`, resume timer              | ended            |
 * | any                      | practiceAgain (a new session)                           | idle, connecting |
 * | any                      | dispose                                                 | idle             |
 *
 * The call relay places (`placeCall`, `snapshot.call`) has its own table in calls.ts.
 *
 * A failed handshake first asks /health (`probing`): if relay answers, it refused us, and
 * retrying the same request would only add to a storm.
 */
import { backoffDelay } from "./backoff.js";
import { callAnswered, placeCall, postWaitingCall } from "./calls.js";
import { PROBE_TIMEOUT_MS, mayBeLive, type ClientEvent, type Command, type Model, type TimerName } from "./model.js";
import { NO_RETRY_CLOSE_CODES } from "./protocol.js";
import { receive } from "./relay-messages.js";
import { NONE, Transition } from "./transition.js";

/** The model after `event`, and what the shell must do about it, in order. */
export function reduce(model: Model, event: ClientEvent): [Model, Command[]] {
  const t = new Transition(model);
  handle(t, event);
  return [t.model, t.commands];
}

/** Every event, app, browser, socket or timer; an event the state or the link does not
 * expect (a late one from an abandoned socket, a cancelled timer) changes nothing. */
function handle(t: Transition, event: ClientEvent): void {
  const { state } = t.model.snapshot;
  switch (event.kind) {
    case "connect":
      if (state !== "idle") return;
      t.setState("connecting");
      return open(t);
    case "retry":
      if (state !== "connection-lost") return;
      if (t.model.standing === "refused-once") t.set({ standing: "opened" });
      t.update({ reconnectAttempt: 0, lastError: null });
      t.setState(t.model.standing === "new" ? "connecting" : "reconnecting");
      return open(t);
    case "send-job-config":
      t.set({ jobConfig: event.config });
      if (event.writable) t.sendJobConfig(event.config);
      return;
    case "continue":
      if (event.writable) t.sendActivity(event.now);
      return;
    case "user-active":
      // Under a warning every sign of life counts at once; otherwise one message per
      // interval is plenty against a timeout measured in minutes.
      if (!t.model.snapshot.inactivityWarning
          && event.now - t.model.lastActivityAt < t.model.settings.activityIntervalMs) return;
      if (event.writable) t.sendActivity(event.now);
      return;
    case "end-session":
      if (!mayBeLive(state)) return;
      if (!event.writable) {
        t.do({ kind: "stop-remotely" });
        return t.finish("frontend_ended");
      }
      t.send({ type: "session.end" });
      t.setState("disconnecting");
      return t.arm("end", t.model.settings.endTimeoutMs);
    case "practice-again":
      if (event.config !== undefined) t.set({ jobConfig: event.config });
      t.leave(event.writable);
      t.setState("idle");
      t.resetSession(event.sessionId);
      t.setState("connecting");
      return open(t);
    case "dispose":
      t.leave(event.writable);
      return t.setState("idle");
    case "place-call":
      // Progress arrives on the socket, so an idle client connects first and posts once open.
      if (placeCall(t, event.request, event.to) && state === "idle") {
        t.setState("connecting");
        open(t);
      }
      return;
    case "call-answered":
      return callAnswered(t, event.request, event.result);
    case "online":
      // The browser knows before our back-off does that the network is back.
      if (state === "reconnecting" && t.model.link.kind === "backoff") {
        t.cancel("reconnect");
        open(t);
      }
      return;
    case "token-failed":
      if (linkIs(t, "token", event.attempt)) t.lose({ kind: "token", message: event.message });
      return;
    case "socket-created":
      if (!linkIs(t, "token", event.attempt)) return;
      t.set({ link: { kind: "handshake", attempt: event.attempt } });
      return t.arm("connect", t.model.settings.connectTimeoutMs);
    case "socket-opened":
      if (linkIs(t, "handshake", event.attempt)) opened(t, event.attempt);
      return;
    case "socket-error":
      // Node 20's WebSocket reports a refused handshake with `error` and never `close`;
      // browsers send both. Either one ends the attempt, once; after `open` only close counts.
      if (linkIs(t, "handshake", event.attempt)) handshakeFailed(t, event.attempt);
      return;
    case "socket-closed":
      if (linkIs(t, "handshake", event.attempt)) return handshakeFailed(t, event.attempt);
      if (!linkIs(t, "open", event.attempt)) return;
      // The resume check asked this socket; the next one asks again. Left armed, it could
      // fire during a long back-off and end an interview whose call is still on.
      t.cancel("resume");
      t.set({ link: NONE });
      return closedUnexpectedly(t, event.code, event.reason, event.jitter);
    case "socket-message":
      if (linkIs(t, "open", event.attempt)) receive(t, event.message, event.now);
      return;
    case "probed":
      if (linkIs(t, "probing", event.attempt)) probed(t, event.reachable, event.jitter);
      return;
    case "timer":
      if (!t.model.timers.has(event.timer)) return; // cancelled meanwhile
      t.spent(event.timer);
      return timerFired(t, event.timer, event.now, event.jitter);
    default:
      return assertNever(event);
  }
}

// -- the socket -------------------------------------------------------------------------

function timerFired(t: Transition, timer: TimerName, now: number, jitter: number): void {
  const { link } = t.model;
  switch (timer) {
    case "connect":
      if (link.kind === "handshake") handshakeFailed(t, link.attempt);
      return;
    case "probe":
      if (link.kind === "probing") probed(t, false, jitter);
      return;
    case "reconnect":
      if (link.kind === "backoff") open(t);
      return;
    case "resume":
      return t.finish("ended_while_disconnected");
    case "end":
      return t.finish("frontend_ended");
    case "tick":
      return t.tick(now);
    default:
      return assertNever(timer);
  }
}

function open(t: Transition): void {
  const attempt = t.model.attempts + 1;
  t.set({ attempts: attempt, link: { kind: "token", attempt } });
  t.do({ kind: "open", attempt, sessionId: t.model.snapshot.sessionId });
}

function opened(t: Transition, attempt: number): void {
  t.cancel("connect");
  const { standing } = t.model;
  t.set({ link: { kind: "open", attempt }, standing: standing === "new" ? "opened" : standing });
  if (t.model.rejoin === "call") {
    // relay sends session.associated first when the call is still on; silence means the
    // session ended while we were away and relay just made us a new, empty one.
    t.arm("resume", t.model.settings.resumeCheckMs);
  } else {
    t.setState("waiting-for-call");
    if (t.model.jobConfig) t.sendJobConfig(t.model.jobConfig);
  }
  // The configuration goes first; the call's progress will arrive on this socket.
  postWaitingCall(t);
}

function handshakeFailed(t: Transition, attempt: number): void {
  // The WebSocket API hides the HTTP status: ask relay over plain HTTP whether it is there.
  t.closeSocket();
  t.set({ link: { kind: "probing", attempt } });
  t.do({ kind: "probe", attempt });
  t.arm("probe", PROBE_TIMEOUT_MS);
}

function probed(t: Transition, reachable: boolean, jitter: number): void {
  t.cancel("probe");
  t.set({ link: NONE });
  if (reachable) {
    // relay answered, so it was relay that said no (401/403/409/429). A first connection
    // refused stays refused. Once connected, allow one more try: a short-lived token may
    // have expired, or relay has not yet noticed our dead socket.
    if (t.model.standing !== "opened") return t.lose({ kind: "refused", message: "relay refused the connection" });
    t.set({ standing: "refused-once" });
  }
  scheduleReconnect(t, jitter);
}

function closedUnexpectedly(t: Transition, code: number, reason: string, jitter: number): void {
  const { state } = t.model.snapshot;
  if (state === "disconnecting") {
    // We were leaving anyway; make sure relay heard it even if session.end was lost.
    t.do({ kind: "stop-remotely" });
    return t.finish("frontend_ended");
  }
  if (NO_RETRY_CLOSE_CODES.has(code)) {
    return t.lose({ kind: "closed", code, message: reason || `relay closed the socket (${code})` });
  }
  // A drop during a resume attempt is still a drop from a live call.
  const fromCall = state === "in-call" || (state === "reconnecting" && t.model.rejoin === "call");
  t.set({ rejoin: fromCall ? "call" : "session" });
  scheduleReconnect(t, jitter);
}

function scheduleReconnect(t: Transition, jitter: number): void {
  t.clearWarnings();
  const attempt = t.model.snapshot.reconnectAttempt + 1;
  const { backoff } = t.model.settings;
  if (attempt > backoff.maxAttempts) {
    return t.lose({ kind: "unreachable", message: `no connection after ${attempt - 1} attempts` });
  }
  const delayMs = backoffDelay(attempt - 1, backoff, () => jitter);
  t.update({ reconnectAttempt: attempt });
  t.setState("reconnecting");
  t.emit("reconnecting", { attempt, delayMs });
  t.set({ link: { kind: "backoff" } });
  t.arm("reconnect", delayMs);
}

function linkIs(t: Transition, kind: "token" | "handshake" | "open" | "probing", attempt: number): boolean {
  const { link } = t.model;
  return link.kind === kind && link.attempt === attempt;
}

function assertNever(value: never): never {
  throw new Error(`unhandled: ${JSON.stringify(value)}`);
}
