/** The reducer alone: every decision the client makes, driven by events, with no socket, no
 * clock and no relay. Each test feeds events and checks the snapshot and the commands. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ClientEvent } from "../src/model.js";
import type { RelayMessage } from "../src/protocol.js";
import { Driver, sent } from "./driver.js";

describe("connecting", () => {
  test("connect opens a socket; the handshake has a deadline; on open the job configuration is sent", () => {
    const d = new Driver();
    assert.deepEqual(d.feed({ kind: "connect" }).filter((c) => c.kind === "open"),
      [{ kind: "open", attempt: 1, sessionId: "session-1" }]);
    assert.equal(d.snap.state, "connecting");
    assert.deepEqual(d.feed({ kind: "socket-created", attempt: 1 }), [{ kind: "arm", timer: "connect", ms: 10_000 }]);
    d.feed({ kind: "socket-opened", attempt: 1 });
    assert.equal(d.snap.state, "waiting-for-call");
    assert.deepEqual(d.effects, [{ kind: "cancel", timer: "connect" },
      { kind: "send", message: { type: "job_config", config: { role: "Chef" } } }]);
    assert.equal(d.snap.jobConfig, "sending");
    d.receive({ type: "job_config.ack", status: "queued" });
    d.receive({ type: "session.associated", callSid: "CA1" });
    assert.deepEqual([d.snap.state, d.snap.callSid, d.snap.jobConfig], ["in-call", "CA1", "queued"]);
    d.receive({ type: "job_config.ack", status: "applied" });
    assert.equal(d.snap.jobConfig, "applied");
  });

  test("connect does nothing unless idle", () => {
    const d = new Driver();
    d.connected();
    const before = d.model;
    assert.deepEqual(d.feed({ kind: "connect" }), []);
    assert.equal(d.model, before);
  });

  test("events of an abandoned socket change nothing", () => {
    const d = new Driver();
    d.connected();
    d.closes(); // attempt 1 is gone; the client waits to reconnect
    const before = d.model;
    for (const event of [
      { kind: "socket-opened", attempt: 1 }, { kind: "socket-error", attempt: 1 },
      { kind: "socket-message", attempt: 1, message: { type: "session.associated" }, now: 0 },
      { kind: "socket-closed", attempt: 1, code: 1006, reason: "", jitter: 0 },
      { kind: "probed", attempt: 1, reachable: true, jitter: 0 }, { kind: "token-failed", attempt: 1, message: "x" },
      { kind: "timer", timer: "resume", now: 0, jitter: 0 },
    ] satisfies ClientEvent[]) {
      assert.deepEqual(d.feed(event), [], event.kind);
      assert.equal(d.model, before, event.kind);
    }
  });

  test("a frame that is not a message is reported and changes nothing else", () => {
    const d = new Driver();
    d.connected();
    d.receive(null as unknown as RelayMessage);
    assert.deepEqual(d.snap.lastError, { kind: "protocol", message: "relay sent a frame that is not a message" });
    assert.equal(d.snap.state, "waiting-for-call");
  });

  test("a failing token source ends in connection-lost", () => {
    const d = new Driver();
    d.feed({ kind: "connect" });
    d.feed({ kind: "token-failed", attempt: 1, message: "Error: no session" });
    assert.deepEqual([d.snap.state, d.snap.lastError?.kind], ["connection-lost", "token"]);
    assert.deepEqual(d.timers, []);
  });
});

describe("reconnecting", () => {
  test("an unexpected close reconnects after a jittered back-off; a message resets the budget", () => {
    const d = new Driver();
    d.connected();
    d.closes(1006, 0);
    assert.deepEqual([d.snap.state, d.snap.reconnectAttempt], ["reconnecting", 1]);
    assert.deepEqual(d.commands.filter((c) => c.kind === "arm" || c.kind === "emit"), [
      { kind: "emit", type: "state", payload: { state: "reconnecting", previous: "waiting-for-call" } },
      { kind: "emit", type: "reconnecting", payload: { attempt: 1, delayMs: 250 } },
      { kind: "arm", timer: "reconnect", ms: 250 },
    ]);
    assert.deepEqual(d.fire("reconnect").map((c) => c.kind), ["open"]);
    d.opens();
    assert.equal(sent(d.commands)[0], "job_config", "a session still waiting for its call is configured again");
    d.closes(1006, 1);
    assert.equal(d.snap.reconnectAttempt, 2);
    assert.deepEqual(d.effects, [{ kind: "arm", timer: "reconnect", ms: 1_000 }]);
    d.fire("reconnect");
    d.opens();
    d.receive({ type: "job_config.ack", status: "queued" });
    assert.equal(d.snap.reconnectAttempt, 0);
  });

  test("after the last attempt the client gives up: connection-lost, unreachable, no timer left", () => {
    const d = new Driver({ reconnect: { maxAttempts: 2 } });
    d.connected();
    d.closes();
    for (let attempt = 2; attempt <= 3; attempt++) {
      d.fire("reconnect");
      d.feed({ kind: "socket-created", attempt: d.attempt });
      d.fire("connect"); // the handshake never completes
      d.fire("probe");   // nor does GET /health
    }
    assert.equal(d.snap.state, "connection-lost");
    assert.deepEqual(d.snap.lastError, { kind: "unreachable", message: "no connection after 2 attempts" });
    assert.deepEqual(d.timers, []);
  });

  test("a drop during a live call resumes it: no job_config, and session.associated confirms the call", () => {
    const d = new Driver();
    d.connected();
    d.receive({ type: "session.associated", callSid: "CA1" });
    d.closes();
    d.fire("reconnect");
    d.opens();
    assert.equal(d.snap.state, "reconnecting");
    assert.deepEqual(d.effects, [{ kind: "cancel", timer: "connect" }, { kind: "arm", timer: "resume", ms: 3_000 }]);
    d.receive({ type: "session.associated", callSid: "CA1" });
    assert.equal(d.snap.state, "in-call");
    assert.deepEqual(d.effects, [{ kind: "cancel", timer: "resume" }]);
  });

  test("a live call relay no longer knows ends the interview: ended_while_disconnected", () => {
    const d = new Driver();
    d.connected();
    d.receive({ type: "session.associated", callSid: "CA1" });
    d.closes();
    d.fire("reconnect");
    d.opens();
    d.closes(); // dropped again while resuming: still a drop from a live call
    d.fire("reconnect");
    d.opens();
    assert.deepEqual(d.timers, ["resume"]);
    d.fire("resume");
    assert.deepEqual([d.snap.state, d.snap.endReason], ["ended", "ended_while_disconnected"]);
    assert.ok(d.commands.some((c) => c.kind === "close-socket"));
    assert.deepEqual(d.timers, []);
  });

  test("a drop while resuming cancels that socket's resume check: a long back-off does not end the call", () => {
    const d = new Driver({ reconnect: { initialMs: 10_000, maxMs: 60_000 } });
    d.connected();
    d.receive({ type: "session.associated", callSid: "CA1" });
    d.closes();
    d.fire("reconnect");
    d.opens();
    d.closes(); // before relay could confirm the call
    assert.deepEqual(d.timers, ["reconnect"], "no resume check left from the socket that is gone");
    assert.equal(d.snap.state, "reconnecting");
    d.fire("reconnect");
    d.opens();
    assert.deepEqual([d.snap.state, d.timers], ["reconnecting", ["resume"]], "the new socket asks again");
  });

  for (const code of [1008, 4009, 4010]) {
    test(`close ${code} is not retried`, () => {
      const d = new Driver();
      d.connected();
      d.closes(code);
      assert.equal(d.snap.state, "connection-lost");
      assert.deepEqual(d.snap.lastError, { kind: "closed", code, message: `relay closed the socket (${code})` });
      assert.deepEqual(d.timers, []);
    });
  }

  test("`online` during the back-off reconnects at once; at any other time it does nothing", () => {
    const d = new Driver();
    d.connected();
    assert.deepEqual(d.feed({ kind: "online" }), []);
    d.closes();
    d.feed({ kind: "online" });
    assert.deepEqual(d.effects, [{ kind: "cancel", timer: "reconnect" }, { kind: "open", attempt: 2, sessionId: "session-1" }]);
    assert.deepEqual(d.feed({ kind: "online" }), [], "an attempt is already under way");
  });
});

describe("refused handshakes", () => {
  test("a failed handshake closes the socket and asks /health, with a deadline", () => {
    const d = new Driver();
    d.feed({ kind: "connect" });
    d.feed({ kind: "socket-created", attempt: 1 });
    d.feed({ kind: "socket-error", attempt: 1 });
    assert.deepEqual(d.effects, [{ kind: "cancel", timer: "connect" }, { kind: "close-socket" },
      { kind: "probe", attempt: 1 }, { kind: "arm", timer: "probe", ms: 3_000 }]);
    assert.deepEqual(d.feed({ kind: "socket-closed", attempt: 1, code: 1006, reason: "", jitter: 0 }), [],
      "error and close both report it; it counts once");
  });

  test("a first connection relay refused stays refused; no reconnect storm", () => {
    const d = new Driver();
    d.feed({ kind: "connect" });
    d.feed({ kind: "socket-created", attempt: 1 });
    d.feed({ kind: "socket-error", attempt: 1 });
    d.feed({ kind: "probed", attempt: 1, reachable: true, jitter: 0 });
    assert.deepEqual([d.snap.state, d.snap.lastError?.kind], ["connection-lost", "refused"]);
    assert.deepEqual(d.timers, []);
    d.feed({ kind: "retry" });
    assert.deepEqual([d.snap.state, d.snap.lastError, d.effects.at(-1)?.kind], ["connecting", null, "open"]);
  });

  test("once connected, one refusal earns one more try (an expired token); the second is final", () => {
    const d = new Driver();
    d.connected();
    d.closes();
    for (const expected of ["reconnecting", "connection-lost"]) {
      d.fire("reconnect");
      d.feed({ kind: "socket-created", attempt: d.attempt });
      d.feed({ kind: "socket-error", attempt: d.attempt });
      d.feed({ kind: "probed", attempt: d.attempt, reachable: true, jitter: 0 });
      assert.equal(d.snap.state, expected);
    }
    d.feed({ kind: "retry" });
    assert.equal(d.snap.state, "reconnecting", "retry() returns to a session that was open before");
  });

  test("a handshake failing while relay is unreachable is the network: back-off goes on", () => {
    const d = new Driver();
    d.feed({ kind: "connect" });
    d.feed({ kind: "socket-created", attempt: 1 });
    d.fire("connect");
    d.feed({ kind: "probed", attempt: 1, reachable: false, jitter: 1 });
    assert.deepEqual([d.snap.state, d.snap.reconnectAttempt, d.timers], ["reconnecting", 1, ["reconnect"]]);
  });
});

describe("ending", () => {
  test("endSession: session.end, disconnecting, then relay's `ended` ends it with relay's reason", () => {
    const d = new Driver();
    d.connected();
    d.feed({ kind: "end-session", writable: true });
    assert.deepEqual([d.snap.state, sent(d.commands), d.timers], ["disconnecting", ["session.end"], ["end"]]);
    d.receive({ type: "call.status_changed", status: "ended", reason: "frontend_ended" });
    assert.deepEqual([d.snap.state, d.snap.endReason, d.timers], ["ended", "frontend_ended", []]);
    assert.ok(d.effects.some((c) => c.kind === "close-socket"), "closed before relay's close can look like a drop");
  });

  test("endSession: a close while disconnecting, or the end timer, ends it too; the close sends the beacon", () => {
    const closed = new Driver();
    closed.connected();
    closed.feed({ kind: "end-session", writable: true });
    closed.closes(1006);
    assert.deepEqual([closed.snap.state, closed.snap.endReason], ["ended", "frontend_ended"]);
    assert.ok(closed.effects.some((c) => c.kind === "stop-remotely"));
    const timedOut = new Driver();
    timedOut.connected();
    timedOut.feed({ kind: "end-session", writable: true });
    timedOut.fire("end");
    assert.deepEqual([timedOut.snap.state, timedOut.timers], ["ended", []]);
  });

  test("endSession without an open socket stops the session over HTTP at once", () => {
    const d = new Driver();
    d.connected();
    d.closes();
    d.feed({ kind: "end-session", writable: false });
    assert.deepEqual([d.snap.state, d.snap.endReason, d.timers], ["ended", "frontend_ended", []]);
    assert.ok(d.effects.some((c) => c.kind === "stop-remotely"));
  });

  test("dispose leaves: session.end on an open socket, then idle, with every timer cancelled", () => {
    const d = new Driver();
    d.connected();
    d.receive({ type: "session.inactivity_warning", disconnectInMs: 120_000 });
    d.feed({ kind: "end-session", writable: true });
    assert.deepEqual(d.timers.sort(), ["end", "tick"]);
    d.feed({ kind: "dispose", writable: true });
    assert.deepEqual(d.states, ["idle"]);
    assert.deepEqual(d.timers, []);
    const fresh = new Driver();
    fresh.connected();
    fresh.feed({ kind: "dispose", writable: true });
    assert.deepEqual([fresh.states, sent(fresh.commands)], [["disconnecting", "idle"], ["session.end"]]);
  });

  test("leaving without an open socket sends the beacon only if the session ever opened", () => {
    const never = new Driver();
    never.feed({ kind: "connect" });
    never.feed({ kind: "dispose", writable: false });
    assert.ok(!never.commands.some((c) => c.kind === "stop-remotely"));
    const opened = new Driver();
    opened.connected();
    opened.closes();
    opened.feed({ kind: "dispose", writable: false });
    assert.ok(opened.commands.some((c) => c.kind === "stop-remotely"));
  });

  test("practiceAgain ends the old session and starts a new one with nothing carried over", () => {
    const d = new Driver();
    d.connected();
    d.receive({ type: "session.associated", callSid: "CA1" });
    d.receive({ type: "response.output_audio_transcript.done", item_id: "a1", transcript: "Welcome" });
    d.receive({ type: "session.duration_warning", endsInMs: 60_000 });
    const old = d.attempt;
    d.feed({ kind: "practice-again", sessionId: "session-2", config: { role: "Pilot" }, writable: true });
    assert.deepEqual(d.states, ["disconnecting", "idle", "connecting"]);
    assert.deepEqual(d.snap, { sessionId: "session-2", state: "connecting", callSid: null, jobConfig: "none",
      transcript: [], inactivityWarning: null, durationWarning: null, endReason: null, lastError: null,
      reconnectAttempt: 0, call: { phase: "idle", to: null, callSid: null, endReason: null, error: null } });
    assert.deepEqual(d.effects.filter((c) => c.kind !== "cancel"), [{ kind: "send", message: { type: "session.end" } },
      { kind: "close-socket" }, { kind: "open", attempt: old + 1, sessionId: "session-2" }]);
    assert.deepEqual(d.feed({ kind: "socket-message", attempt: old, message: { type: "session.associated" }, now: 0 }), []);
    d.opens();
    assert.deepEqual(d.effects.at(-1), { kind: "send", message: { type: "job_config", config: { role: "Pilot" } } });
  });
});

describe("messages", () => {
  test("an unusable job configuration is rejected and reported, and the interview goes on", () => {
    const d = new Driver();
    d.connected();
    d.receive({ type: "error", code: "invalid_job_config", message: "unknown voice" });
    assert.deepEqual([d.snap.jobConfig, d.snap.state], ["rejected", "waiting-for-call"]);
    assert.deepEqual(d.snap.lastError, { kind: "server", code: "invalid_job_config", message: "unknown voice" });
  });

  test("the model's own errors are model events, not a refusal of what the client sent", () => {
    const d = new Driver();
    d.connected();
    d.receive({ type: "error", source: "model", event_id: "e1",
                error: { type: "invalid_request_error", code: "response_cancel_not_active", message: "No." } });
    assert.equal(d.snap.lastError, null);
    d.receive({ type: "error", source: "relay", code: "wrong_order", message: "needs a live call" });
    assert.deepEqual(d.snap.lastError, { kind: "server", code: "wrong_order", message: "needs a live call" });
  });

  test("the transcript follows the model's events; only lines with text are shown", () => {
    const d = new Driver();
    d.connected();
    d.receive({ type: "conversation.item.added", item: { id: "u1", type: "message", role: "user" } });
    assert.equal(d.snap.transcript.length, 0, "a reserved line has no text yet");
    d.receive({ type: "response.output_audio_transcript.delta", item_id: "a1", delta: "Hi" });
    assert.deepEqual(d.commands.filter((c) => c.kind === "emit").map((c) => c.type), ["transcript"]);
    d.receive({ type: "conversation.item.input_audio_transcription.completed", item_id: "u1", transcript: "Hello" });
    assert.deepEqual(d.snap.transcript.map((l) => [l.id, l.text]), [["u1", "Hello"], ["a1", "Hi"]]);
  });
});

describe("countdowns and activity", () => {
  test("a warning is a countdown that ticks once a second until relay clears it", () => {
    const d = new Driver();
    d.connected();
    d.receive({ type: "session.inactivity_warning", disconnectInMs: 120_000 }, 1_000);
    assert.deepEqual(d.snap.inactivityWarning, { kind: "inactivity", endsAt: 121_000, remainingMs: 120_000 });
    assert.deepEqual(d.effects, [{ kind: "arm", timer: "tick", ms: 1_000 }]);
    d.fire("tick", 2_500);
    assert.equal(d.snap.inactivityWarning?.remainingMs, 118_500);
    assert.deepEqual(d.effects, [{ kind: "arm", timer: "tick", ms: 1_000 }]);
    d.receive({ type: "session.inactivity_warning_cleared" });
    assert.deepEqual([d.snap.inactivityWarning, d.timers], [null, []]);
  });

  test("a warning replayed after a reconnect is stale and not shown", () => {
    const d = new Driver();
    d.connected();
    d.receive({ type: "session.resumed", missed: 1, dropped: 0 });
    d.receive({ type: "session.inactivity_warning", disconnectInMs: 120_000 });
    assert.equal(d.snap.inactivityWarning, null);
    d.receive({ type: "session.inactivity_warning", disconnectInMs: 120_000 });
    assert.notEqual(d.snap.inactivityWarning, null, "after the replay, a warning counts");
  });

  test("activity is sent at most once per interval, but at once under a warning", () => {
    const d = new Driver({ activityIntervalMs: 15_000 });
    d.connected();
    const activity = (now: number): string[] => sent(d.feed({ kind: "user-active", now, writable: true }));
    assert.deepEqual(activity(0), ["activity"]);
    assert.deepEqual(activity(10_000), []);
    assert.deepEqual(activity(15_000), ["activity"]);
    d.receive({ type: "session.inactivity_warning", disconnectInMs: 120_000 });
    assert.deepEqual(activity(15_001), ["activity"]);
    assert.deepEqual(sent(d.feed({ kind: "user-active", now: 40_000, writable: false })), [], "no socket, no send");
  });
});
