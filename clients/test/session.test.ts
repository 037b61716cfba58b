/** One interview's life against a real relay: configuration and its ack, practice again,
 * dispose, stop-all, the unload beacon, and activity throttling. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { RelayClient, installUnloadBeacon } from "../relay-client.js";
import { cleanUpLingeringSessions, interviewOptions, jobConfigLabel, startInterview } from "../examples/interview.js";
import {
  CountingClock, FakeClock, FakeDocument, Relay, SimCall, nextEvent, recordingWebSocket, startRelay,
  waitForSnapshot, waitForState,
} from "./support.js";

let relay: Relay;
before(async () => {
  relay = await startRelay();
  process.env.NEXT_PUBLIC_WEBSOCKET_SERVER_URL = relay.wsUrl;
});
after(async () => { await relay.stop(); });

describe("connecting and the job configuration", () => {
  test("sends the job configuration on open; its ack goes queued → applied once a call starts", async () => {
    const rec = recordingWebSocket();
    const client = new RelayClient({ ...interviewOptions({ role: "Chef", company: "Bistro" }, { userId: "u-ack" }),
      WebSocket: rec.WebSocket });
    const acks: string[] = [];
    client.on("jobConfig", (status) => acks.push(status));
    client.connect();
    assert.equal(client.state, "connecting");
    const waiting = await waitForSnapshot(client, (s) => s.state === "waiting-for-call" && s.jobConfig === "queued",
      "queued ack");
    assert.equal(jobConfigLabel(waiting.jobConfig), "Settings saved; they apply when the call connects.");
    assert.deepEqual(rec.sent[0], { type: "job_config", config: { role: "Chef", company: "Bistro" } });

    const call = await SimCall.connect(relay);
    call.start(client.sessionId);
    const live = await waitForSnapshot(client, (s) => s.state === "in-call" && s.jobConfig === "applied", "applied");
    assert.deepEqual(acks, ["sending", "queued", "applied"]);
    assert.equal(live.callSid, call.callSid);

    // The transcript, from the model's events: the greeting, the caller's turn, the answer.
    call.speak();
    const talked = await waitForSnapshot(client, (s) => s.transcript.filter((i) => i.final).length >= 3, "3 lines");
    assert.deepEqual(talked.transcript.slice(0, 3).map((i) => i.role), ["assistant", "user", "assistant"]);
    assert.match(talked.transcript[1]!.text, /seconds of speech/);

    const ended = nextEvent(client, "callStatus", (c) => c.status === "ended");
    call.hangUp();
    assert.equal((await ended).reason, "caller_hung_up");
    const final = await waitForState(client, "ended");
    assert.equal(final.endReason, "caller_hung_up");
    assert.equal(rec.sockets.length, 1, "no reconnect after the call ended");
    client.dispose();
    await relay.waitIdle();
  });
});

describe("configuration updates", () => {
  test("a configuration sent during the call is applied live; an unusable one is rejected", async () => {
    const client = new RelayClient(interviewOptions({ role: "Chef" }, { userId: "u-live-config" }));
    client.connect();
    const call = await SimCall.connect(relay);
    call.start(client.sessionId);
    await waitForSnapshot(client, (s) => s.state === "in-call" && s.jobConfig === "applied", "applied");
    const statuses: string[] = [];
    client.on("jobConfig", (status) => statuses.push(status));
    assert.equal(client.sendJobConfig({ role: "Pilot", interviewStyle: "friendly" }), true);
    await waitForSnapshot(client, (s) => s.jobConfig === "applied", "applied live");
    assert.deepEqual(statuses, ["sending", "applied"]);

    client.sendJobConfig({ role: "Chef", voice: "no-such-voice" });
    const rejected = await waitForSnapshot(client, (s) => s.jobConfig === "rejected", "rejected");
    assert.equal(jobConfigLabel(rejected.jobConfig), "The interviewer could not use these settings.");
    assert.equal(rejected.lastError?.kind, "server");
    assert.equal(rejected.lastError?.code, "invalid_job_config");
    assert.equal(rejected.state, "in-call", "a refused message does not end the interview");
    call.hangUp();
    await waitForState(client, "ended");
    client.dispose();
    await relay.waitIdle();
  });
});

describe("practice again", () => {
  test("ends the old session and starts a new one with no stale state", async () => {
    const rec = recordingWebSocket();
    const client = new RelayClient({ ...interviewOptions({ role: "Chef" }, { userId: "u-again" }),
      WebSocket: rec.WebSocket });
    client.connect();
    const first = client.sessionId;
    const call = await SimCall.connect(relay);
    call.start(first);
    await waitForSnapshot(client, (s) => s.jobConfig === "applied" && s.transcript.length > 0, "first interview");

    client.practiceAgain({ role: "Pilot" });
    const fresh = client.getSnapshot();
    assert.notEqual(fresh.sessionId, first);
    assert.equal(fresh.state, "connecting");
    assert.deepEqual([fresh.callSid, fresh.transcript, fresh.jobConfig, fresh.endReason, fresh.inactivityWarning],
      [null, [], "none", null, null]);

    await waitForSnapshot(client, (s) => s.state === "waiting-for-call" && s.jobConfig === "queued", "new session");
    assert.deepEqual(rec.sent.filter((m) => m.type !== "activity").map((m) => m.type),
      ["job_config", "session.end", "job_config"]);
    assert.deepEqual(rec.sent.at(-1), { type: "job_config", config: { role: "Pilot" } });
    // relay ended the old interview, call included, because the user left it.
    await relay.waitForHealth((h) => h.endedByReason.frontend_ended! >= 1 && h.sessions === 1 && h.connections.call === 0,
      "old session ended");
    assert.equal(client.getSnapshot().transcript.length, 0, "nothing from the old call arrived late");

    const call2 = await SimCall.connect(relay);
    call2.start(client.sessionId);
    const live = await waitForSnapshot(client, (s) => s.state === "in-call" && s.jobConfig === "applied", "second call");
    assert.equal(live.callSid, call2.callSid);
    client.dispose();
    await relay.waitIdle();
  });
});

describe("cleanup on unmount", () => {
  test("dispose() ends the interview, closes the socket, clears timers and listeners; idempotent", async () => {
    const rec = recordingWebSocket();
    const clock = new CountingClock();
    const beacons: string[] = [];
    const doc = new FakeDocument();
    const win = new FakeDocument();
    const client = new RelayClient({ ...interviewOptions({ role: "Chef" }, { userId: "u-dispose" }),
      WebSocket: rec.WebSocket, clock, sendBeacon: (url) => { beacons.push(url); return true; }, networkEvents: win });
    client.trackActivity(doc);
    installUnloadBeacon(client, win);
    client.connect();
    const call = await SimCall.connect(relay);
    call.start(client.sessionId);
    await waitForSnapshot(client, (s) => s.state === "in-call", "in call");
    const changes: string[] = [];
    client.on("state", ({ state }) => changes.push(state));

    client.dispose();
    client.dispose();
    assert.deepEqual(changes, ["disconnecting", "idle"]);
    assert.equal(clock.pending.size, 0, "no timer left");
    assert.equal(rec.sent.at(-1)?.type, "session.end");
    await relay.waitIdle(); // the call was ended too, not left running for the inactivity timeout
    const sentBefore = rec.sent.length;
    doc.fire("mousemove");
    win.fire("beforeunload");
    win.fire("online");
    assert.equal(rec.sent.length, sentBefore, "activity listener removed");
    assert.deepEqual(beacons, [], "unload listener removed");
    assert.ok(rec.sockets[0]!.readyState >= WebSocket.CLOSING, "socket closed");
    assert.throws(() => client.connect(), /disposed/);
  });

  test("startInterview's cleanup (the useEffect return) leaves nothing on relay", async () => {
    const { client, cleanup } = startInterview(interviewOptions({ role: "Chef" }, { userId: "u-effect" }));
    await waitForSnapshot(client, (s) => s.jobConfig === "queued", "queued");
    await relay.waitForHealth((h) => h.sessions === 1, "session open");
    cleanup();
    await relay.waitIdle();
  });
});

describe("stop-all and the unload beacon", () => {
  test("stop-all on app load ends the user's lingering session; the client does not reconnect", async () => {
    const rec = recordingWebSocket();
    const client = new RelayClient({ ...interviewOptions({ role: "Chef" }, { userId: "u-stop" }), WebSocket: rec.WebSocket });
    client.connect();
    await waitForSnapshot(client, (s) => s.jobConfig === "queued", "queued");
    assert.equal(await cleanUpLingeringSessions({ userId: "someone-else" }), 0);
    assert.equal(await cleanUpLingeringSessions({ userId: "u-stop" }), 1);
    const ended = await waitForState(client, "ended");
    assert.equal(ended.endReason, "stopped");
    assert.equal(rec.sockets.length, 1);
    client.dispose();
    await relay.waitIdle();
  });

  test("beforeunload sends the beacon to /api/sessions/{id}/stop?userId=…; relay ends the call", async () => {
    const beacons: string[] = [];
    // sendBeacon is a browser API: this sender makes the same body-less POST with fetch.
    const sendBeacon = (url: string): boolean => {
      beacons.push(url);
      void fetch(url, { method: "POST" });
      return true;
    };
    const win = new FakeDocument();
    const client = new RelayClient({ ...interviewOptions({ role: "Chef" }, { userId: "u-beacon" }), sendBeacon });
    const uninstall = installUnloadBeacon(client, win);
    client.connect();
    const call = await SimCall.connect(relay);
    call.start(client.sessionId);
    await waitForSnapshot(client, (s) => s.state === "in-call", "in call");

    win.fire("beforeunload");
    win.fire("pagehide"); // fired too on a real close: one beacon is enough
    assert.deepEqual(beacons, [`${relay.httpUrl}/api/sessions/${client.sessionId}/stop?userId=u-beacon`]);
    assert.equal((await waitForState(client, "ended")).endReason, "stopped");
    await relay.waitIdle();
    uninstall();
    client.dispose();
  });
});

describe("activity tracking", () => {
  test("mouse, keys, touch and visibility are throttled to one activity message per interval", async () => {
    const rec = recordingWebSocket();
    const clock = new FakeClock();
    const doc = new FakeDocument();
    const client = new RelayClient({ ...interviewOptions({ role: "Chef" }, { userId: "u-activity" }),
      WebSocket: rec.WebSocket, clock, activityIntervalMs: 15_000 });
    const stopTracking = client.trackActivity(doc);
    client.connect();
    await waitForSnapshot(client, (s) => s.jobConfig === "queued", "queued");
    const activities = (): number => rec.sent.filter((m) => m.type === "activity").length;

    for (const type of ["mousemove", "mousemove", "mousedown", "keydown", "touchstart"]) doc.fire(type);
    assert.equal(activities(), 1);
    clock.advance(10_000);
    doc.fire("keydown");
    assert.equal(activities(), 1, "within 15 s: throttled");
    clock.advance(5_000);
    doc.fire("touchstart");
    assert.equal(activities(), 2);
    clock.advance(20_000);
    doc.visibilityState = "hidden";
    doc.fire("visibilitychange");
    assert.equal(activities(), 2, "hiding the tab is not activity");
    doc.visibilityState = "visible";
    doc.fire("visibilitychange");
    assert.equal(activities(), 3, "coming back to the tab is");
    stopTracking();
    clock.advance(20_000);
    doc.fire("mousemove");
    assert.equal(activities(), 3, "stopped tracking");
    // relay took every one of them (an unknown type would have come back as an error).
    await relay.waitForHealth((h) => h.sessions >= 1, "session alive");
    assert.equal(client.getSnapshot().lastError, null);
    client.dispose();
    await relay.waitIdle();
  });
});
