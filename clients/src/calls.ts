/**
 * The call relay places for the session ("Call me", docs/protocol.md "Outbound calls"), as
 * decisions free of I/O: `placeCall()` becomes a `post-call` command once the socket is open
 * (the call's progress arrives on that socket), relay's answer comes back as `call-answered`,
 * and `call.status_changed` moves `snapshot.call` on. Composed by state.ts, relay-messages.ts
 * and transition.ts.
 *
 * `snapshot.call.phase`, and what moves it:
 *
 * | from                         | event                                              | to          |
 * |------------------------------|----------------------------------------------------|-------------|
 * | idle, ended, refused         | placeCall (socket open, opening, or idle: connect) | placing     |
 * | placing                      | relay answers 201 (`status`)                       | queued, …   |
 * | placing                      | relay or the client refuses; the connection is lost while waiting | refused |
 * | any but connected, ended     | `call.status_changed` queued/initiated/ringing/in-progress, later than now | that status |
 * | placing … in-progress        | `call.status_changed: connected`, `session.associated` | connected |
 * | placing … connected          | the session ends (`ended`, end or resume timer)    | ended       |
 * | any                          | practiceAgain (a new session)                      | idle        |
 *
 * Progress only moves forward: a late or replayed status changes nothing.
 */
import type { DialStatus } from "./protocol.js";
import type { Transition } from "./transition.js";
import type { CallPhase, PlaceCallError, PlaceCallResult } from "./types.js";

/** How far along each phase is; progress never goes back. */
const RANK: Readonly<Record<CallPhase, number>> = {
  idle: 0, refused: 0, placing: 1, queued: 2, initiated: 3, ringing: 4, "in-progress": 5, connected: 6, ended: 7,
};

/** Phases of a call that is asked for or going on (a second one is up to relay). */
const LIVE: ReadonlySet<CallPhase> = new Set(["placing", "queued", "initiated", "ringing", "in-progress", "connected"]);

/** relay's answer to `POST /api/calls` as a phase (Twilio says `queued` at first). */
function answeredPhase(status: string): CallPhase {
  return status === "initiated" || status === "ringing" || status === "in-progress" ? status : "queued";
}

const ownError = (code: PlaceCallError["code"], message: string): PlaceCallError => ({ code, message, status: null });

/** `placeCall(to)`. Refused at once when relay cannot be asked (or one request is already on
 * its way); otherwise the POST goes now if the socket is open, or once it opens. Returns
 * whether the request is waiting for the socket (the caller connects an idle client). */
export function placeCall(t: Transition, request: number, to: string): boolean {
  const refuse = (error: PlaceCallError): boolean => {
    t.do({ kind: "settle-call", request, result: { ok: false, error } });
    return false;
  };
  switch (t.model.snapshot.state) {
    case "ended":
    case "disconnecting":
      return refuse(ownError("session_ended", "this interview has ended; start a new one to place a call"));
    case "connection-lost":
      return refuse(ownError("not_connected", "not connected to relay; try again (retry) first"));
    default:
      break;
  }
  if (t.model.placing) return refuse(ownError("call_in_progress", "a call is already being placed for this session"));
  const open = t.model.link.kind === "open";
  t.set({ placing: { request, to, stage: open ? "posting" : "waiting" } });
  // A call already under way keeps its progress: relay decides about a second one (409).
  if (!LIVE.has(t.model.snapshot.call.phase)) t.setCall({ phase: "placing", to, callSid: null, endReason: null, error: null });
  if (open) t.do({ kind: "post-call", request, sessionId: t.model.snapshot.sessionId, to });
  return !open;
}

/** The socket opened: a call waiting for it is asked for now. */
export function postWaitingCall(t: Transition): void {
  const { placing } = t.model;
  if (placing?.stage !== "waiting") return;
  t.set({ placing: { ...placing, stage: "posting" } });
  t.do({ kind: "post-call", request: placing.request, sessionId: t.model.snapshot.sessionId, to: placing.to });
}

/** relay answered the POST (or the client could not ask). The promise learns relay's answer
 * whatever happened meanwhile; the snapshot only if the request is this session's current one. */
export function callAnswered(t: Transition, request: number, result: PlaceCallResult): void {
  t.do({ kind: "settle-call", request, result });
  if (t.model.placing?.request !== request) return; // a session left since, or refused at once
  t.set({ placing: null });
  const { call } = t.model.snapshot;
  if (result.ok) {
    // The socket may have told us of the call's progress first; it is never set back.
    const phase = call.phase === "placing" ? answeredPhase(result.status) : call.phase;
    return t.setCall({ phase, callSid: result.callSid });
  }
  // A refused second request leaves the call under way as it is; only the promise hears of it.
  if (call.phase === "placing") t.setCall({ phase: "refused", error: result.error });
}

/** `call.status_changed` with Twilio's progress (queued, initiated, ringing, in-progress). */
export function callProgressed(t: Transition, status: DialStatus): void {
  const { phase } = t.model.snapshot.call;
  if (phase === "connected" || phase === "ended" || RANK[status] <= RANK[phase]) return;
  t.setCall({ phase: status, endReason: null, error: null });
}

/** The call's stream started (`connected`, or `session.associated` on a reconnect). A call
 * that came in by itself (no `placeCall()`) leaves `snapshot.call` idle. */
export function callConnected(t: Transition): void {
  const { phase } = t.model.snapshot.call;
  if (LIVE.has(phase) && phase !== "connected") t.setCall({ phase: "connected" });
}

/** The session ended: so did its call (relay hangs it up, or cancels it while it rings). A
 * request still waiting for the socket will never be sent. */
export function callEnded(t: Transition, reason: string): void {
  refuseWaiting(t, ownError("session_ended", "the interview ended before the call was placed"));
  if (LIVE.has(t.model.snapshot.call.phase)) t.setCall({ phase: "ended", endReason: reason });
}

/** The client gave up connecting: a request waiting for the socket is refused. One already
 * posted still gets relay's answer. */
export function connectionGone(t: Transition): void {
  refuseWaiting(t, ownError("not_connected", "no connection to relay, so the call was not placed"));
}

/** The session is left (practiceAgain, dispose): nothing of its call carries over; a POST on
 * its way still settles its promise with relay's answer. */
export function sessionLeft(t: Transition): void {
  refuseWaiting(t, ownError("not_connected", "the interview was left before the call was placed"));
  t.set({ placing: null });
}

function refuseWaiting(t: Transition, error: PlaceCallError): void {
  const { placing } = t.model;
  if (placing?.stage !== "waiting") return;
  t.set({ placing: null });
  t.do({ kind: "settle-call", request: placing.request, result: { ok: false, error } });
  if (t.model.snapshot.call.phase === "placing") t.setCall({ phase: "refused", error });
}
