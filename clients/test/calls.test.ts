/** The call relay places ("Call me", src/calls.ts), through the reducer alone: placeCall's
 * command and its result, Twilio's progress in the snapshot, every end, refusals, and what a
 * lost connection or a new session does to a request. No socket, no relay. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Command } from "../src/model.js";
import type { CallProgress, PlaceCallResult } from "../src/types.js";
import { Driver, sent } from "./driver.js";

const placed = (callSid = "CA1", status = "queued"): PlaceCallResult =>
  ({ ok: true, callSid, sessionId: "session-1", status });
const refused = (code: string, message: string, status: number | null): PlaceCallResult =>
  ({ ok: false, error: { code, message, status } });
const progress = (status: string) => ({ type: "call.status_changed", status, streamSid: null, reason: null });
const ended = (reason: string) => ({ type: "call.status_changed", status: "ended", streamSid: null, reason });

/** The POSTs the last event asked for. */
const posts = (commands: Command[]) => commands.filter((c) => c.kind === "post-call");
/** What the placeCall() promises of the last event resolved with. */
const settled = (commands: Command[]) => commands.flatMap((c) => (c.kind === "settle-call" ? [c] : []));
/** The `callProgress` events of the last event. */
const told = (commands: Command[]): CallProgress[] =>
  commands.flatMap((c) => (c.kind === "emit" && c.type === "callProgress" ? [c.payload] : []));

describe("placing the call", () => {
  test("an idle client connects first and posts once the socket is open, after the configuration", () => {
    const d = new Driver();
    const commands = d.feed({ kind: "place-call", request: 1, to: "+15551234567" });
    assert.equal(d.snap.state, "connecting");
    assert.deepEqual(posts(commands), [], "no POST before the socket that hears the progress");
    assert.deepEqual(d.snap.call, { phase: "placing", to: "+15551234567", callSid: null, endReason: null, error: null });
    assert.deepEqual(told(commands).map((c) => c.phase), ["placing"]);
    d.opens();
    assert.deepEqual(sent(d.commands), ["job_config"]);
    assert.deepEqual(d.effects.at(-1), { kind: "post-call", request: 1, sessionId: "session-1", to: "+15551234567" });
    d.feed({ kind: "call-answered", request: 1, result: placed() });
    assert.deepEqual(settled(d.commands), [{ kind: "settle-call", request: 1, result: placed() }]);
    assert.deepEqual([d.snap.call.phase, d.snap.call.callSid, d.snap.state], ["queued", "CA1", "waiting-for-call"]);
  });

  test("on an open socket the POST goes at once; while connecting it waits for the open", () => {
    const open = new Driver();
    open.connected();
    assert.equal(posts(open.feed({ kind: "place-call", request: 1, to: "+15551234567" })).length, 1);
    const opening = new Driver();
    opening.feed({ kind: "connect" });
    assert.deepEqual(posts(opening.feed({ kind: "place-call", request: 1, to: "+15551234567" })), []);
    assert.equal(opening.model.attempts, 1, "no second socket");
    opening.opens();
    assert.equal(posts(opening.commands).length, 1);
  });

  test("Twilio's progress moves the call forward to connected; a late status changes nothing", () => {
    const d = new Driver();
    d.connected();
    d.feed({ kind: "place-call", request: 1, to: "+15551234567" });
    // relay tells the socket before its HTTP answer arrives: the answer does not set it back.
    d.receive(progress("queued"));
    d.receive(progress("ringing"));
    d.feed({ kind: "call-answered", request: 1, result: placed("CA9") });
    assert.deepEqual([d.snap.call.phase, d.snap.call.callSid], ["ringing", "CA9"]);
    d.receive(progress("in-progress"));
    assert.equal(d.snap.call.phase, "in-progress");
    assert.equal(d.snap.state, "waiting-for-call", "answered is not yet the interview");
    const stale = d.model;
    assert.deepEqual(d.receive(progress("ringing")), [], "a replayed ringing");
    assert.equal(d.model, stale);
    d.receive({ type: "call.status_changed", status: "connected", streamSid: "MZ1", reason: null });
    assert.deepEqual([d.snap.call.phase, d.snap.state], ["connected", "in-call"]);
    d.receive(ended("caller_hung_up"));
    assert.deepEqual([d.snap.call.phase, d.snap.call.endReason, d.snap.state], ["ended", "caller_hung_up", "ended"]);
  });

  test("every change of snapshot.call is a callProgress event", () => {
    const d = new Driver();
    d.connected();
    const phases: string[] = [];
    const feed = (commands: Command[]) => phases.push(...told(commands).map((c) => c.phase));
    feed(d.feed({ kind: "place-call", request: 1, to: "+15551234567" }));
    feed(d.feed({ kind: "call-answered", request: 1, result: placed() }));
    for (const status of ["initiated", "ringing", "ringing", "in-progress"]) feed(d.receive(progress(status)));
    feed(d.receive({ type: "session.associated", callSid: "CA1" }));
    assert.deepEqual(phases, ["placing", "queued", "initiated", "ringing", "in-progress", "connected"]);
  });

  test("a call that comes in by itself leaves snapshot.call idle", () => {
    const d = new Driver();
    d.connected();
    d.receive({ type: "call.status_changed", status: "connected", streamSid: "MZ1", reason: null });
    d.receive(ended("caller_hung_up"));
    assert.equal(d.snap.call.phase, "idle");
  });
});

describe("how a placed call ends", () => {
  for (const reason of ["no_answer", "busy", "voicemail", "call_failed", "canceled"]) {
    test(`${reason}: the call and the interview end with relay's reason`, () => {
      const d = new Driver();
      d.connected();
      d.feed({ kind: "place-call", request: 1, to: "+15551234567" });
      d.feed({ kind: "call-answered", request: 1, result: placed() });
      d.receive(progress("ringing"));
      d.receive(ended(reason));
      assert.deepEqual([d.snap.state, d.snap.endReason], ["ended", reason]);
      assert.deepEqual(d.snap.call, { phase: "ended", to: "+15551234567", callSid: "CA1", endReason: reason, error: null });
    });
  }

  test("after the end, placeCall is refused without asking relay: the session is over", () => {
    const d = new Driver();
    d.connected();
    d.feed({ kind: "place-call", request: 1, to: "+15551234567" });
    d.receive(ended("no_answer"));
    const before = d.model;
    const commands = d.feed({ kind: "place-call", request: 2, to: "+15551234567" });
    assert.deepEqual(commands, [{ kind: "settle-call", request: 2, result:
      refused("session_ended", "this interview has ended; start a new one to place a call", null) }]);
    assert.equal(d.model, before, "the snapshot still says no answer");
  });

  test("endSession while it rings ends the call too", () => {
    const d = new Driver();
    d.connected();
    d.feed({ kind: "place-call", request: 1, to: "+15551234567" });
    d.receive(progress("ringing"));
    d.feed({ kind: "end-session", writable: true });
    d.receive(ended("frontend_ended"));
    assert.deepEqual([d.snap.call.phase, d.snap.call.endReason], ["ended", "frontend_ended"]);
  });
});

describe("refusals", () => {
  test("relay's refusal shows in the snapshot with its code and message; placeCall may try again", () => {
    const d = new Driver();
    d.connected();
    d.feed({ kind: "place-call", request: 1, to: "555-1234" });
    const refusal = refused("invalid_number", "give the number in E.164 form, e.g. +15551234567", 400);
    d.feed({ kind: "call-answered", request: 1, result: refusal });
    assert.deepEqual(settled(d.commands), [{ kind: "settle-call", request: 1, result: refusal }]);
    assert.deepEqual(d.snap.call, { phase: "refused", to: "555-1234", callSid: null, endReason: null,
      error: { code: "invalid_number", message: "give the number in E.164 form, e.g. +15551234567", status: 400 } });
    assert.equal(d.snap.state, "waiting-for-call", "a refused call does not end the interview");
    assert.equal(posts(d.feed({ kind: "place-call", request: 2, to: "+15551234567" })).length, 1);
    assert.deepEqual([d.snap.call.phase, d.snap.call.error], ["placing", null]);
  });

  test("a second placeCall while one is on its way is refused at once: two POSTs could both dial", () => {
    const d = new Driver();
    d.connected();
    d.feed({ kind: "place-call", request: 1, to: "+15551234567" });
    const commands = d.feed({ kind: "place-call", request: 2, to: "+15551234567" });
    assert.deepEqual(commands, [{ kind: "settle-call", request: 2, result:
      refused("call_in_progress", "a call is already being placed for this session", null) }]);
    assert.equal(d.snap.call.phase, "placing");
  });

  test("a second placeCall while the call rings asks relay; its 409 leaves the ringing call as it is", () => {
    const d = new Driver();
    d.connected();
    d.feed({ kind: "place-call", request: 1, to: "+15551234567" });
    d.feed({ kind: "call-answered", request: 1, result: placed() });
    d.receive(progress("ringing"));
    const ringing = d.snap.call;
    assert.equal(posts(d.feed({ kind: "place-call", request: 2, to: "+15557654321" })).length, 1);
    assert.equal(d.snap.call, ringing);
    const conflict = refused("call_in_progress", "this session already has a call", 409);
    d.feed({ kind: "call-answered", request: 2, result: conflict });
    assert.deepEqual(settled(d.commands), [{ kind: "settle-call", request: 2, result: conflict }]);
    assert.equal(d.snap.call, ringing);
  });

  test("placeCall with the connection lost is refused until retry()", () => {
    const d = new Driver();
    d.feed({ kind: "connect" });
    d.feed({ kind: "token-failed", attempt: 1, message: "no token" });
    assert.deepEqual(settled(d.feed({ kind: "place-call", request: 1, to: "+15551234567" })).map((c) => c.result),
      [refused("not_connected", "not connected to relay; try again (retry) first", null)]);
    assert.equal(d.snap.call.phase, "idle");
  });

  test("a request waiting for the socket is refused when the connection is lost", () => {
    const d = new Driver();
    d.feed({ kind: "place-call", request: 1, to: "+15551234567" });
    d.feed({ kind: "socket-created", attempt: 1 });
    d.feed({ kind: "socket-error", attempt: 1 });
    d.feed({ kind: "probed", attempt: 1, reachable: true, jitter: 0 }); // relay refused the handshake
    const error = { code: "not_connected", message: "no connection to relay, so the call was not placed",
      status: null };
    assert.deepEqual(settled(d.commands).map((c) => c.result), [{ ok: false, error }]);
    assert.deepEqual([d.snap.state, d.snap.call.phase, d.snap.call.error], ["connection-lost", "refused", error]);
  });
});

describe("a new session", () => {
  test("practiceAgain refuses a request still waiting; an answer to one already posted settles only its promise", () => {
    const waiting = new Driver();
    waiting.feed({ kind: "place-call", request: 1, to: "+15551234567" });
    waiting.feed({ kind: "practice-again", sessionId: "session-2", config: undefined, writable: false });
    assert.deepEqual(settled(waiting.commands).map((c) => c.result),
      [refused("not_connected", "the interview was left before the call was placed", null)]);
    assert.deepEqual(told(waiting.commands).at(-1)?.phase, "idle");
    waiting.opens();
    assert.deepEqual(posts(waiting.commands), [], "the old request is not posted for the new session");

    const posted = new Driver();
    posted.connected();
    posted.feed({ kind: "place-call", request: 1, to: "+15551234567" });
    posted.feed({ kind: "practice-again", sessionId: "session-2", config: undefined, writable: true });
    assert.equal(posted.snap.call.phase, "idle");
    const fresh = posted.model;
    const commands = posted.feed({ kind: "call-answered", request: 1, result: placed() });
    assert.deepEqual(commands, [{ kind: "settle-call", request: 1, result: placed() }]);
    assert.equal(posted.model, fresh, "nothing of the old session's call reaches the new one");
  });
});
