/** Reconnecting: back-off, resume with replay, and the closes after which the client must not
 * retry. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  RelayClient, backoffDelay, randomSessionId, type WebSocketConstructor, type WebSocketLike,
} from "../relay-client.js";
import { connectionNotice, interviewOptions } from "../examples/interview.js";
import {
  FakeClock, Relay, SimCall, nextEvent, recordingWebSocket, startRelay, t, waitForSnapshot, waitForState,
} from "./support.js";

let relay: Relay;
before(async () => {
  relay = await startRelay();
  process.env.NEXT_PUBLIC_WEBSOCKET_SERVER_URL = relay.wsUrl;
});
after(async () => { await relay.stop(); });

test("backoffDelay is exponential, capped, with half of it jittered", () => {
  const policy = { initialMs: 500, maxMs: 15_000, factor: 2 };
  assert.deepEqual([0, 1, 2, 3].map((n) => backoffDelay(n, policy, () => 1)), [500, 1000, 2000, 4000]);
  assert.deepEqual([0, 1, 2, 3].map((n) => backoffDelay(n, policy, () => 0)), [250, 500, 1000, 2000]);
  assert.equal(backoffDelay(20, policy, () => 1), 15_000);
  assert.equal(backoffDelay(20, policy, () => 0), 7_500);
});

test("session IDs are v4 UUIDs, also where crypto.randomUUID is missing (plain-http LAN dev)", () => {
  const v4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  assert.match(randomSessionId(), v4);
  const insecure = { getRandomValues: globalThis.crypto.getRandomValues.bind(globalThis.crypto) };
  const ids = new Set(Array.from({ length: 50 }, () => randomSessionId(insecure)));
  assert.equal(ids.size, 50);
  for (const id of ids) assert.match(id, v4);
});

describe("resume", () => {
  // The first retry waits 1.5 s (random pinned to 1): time for the call to go on without us.
  const reconnect = { initialMs: t(1_500), factor: 2, maxMs: t(10_000) };

  test("an abnormal close reconnects to the same session; relay replays what was missed", async () => {
    const rec = recordingWebSocket();
    const client = new RelayClient({ ...interviewOptions({ role: "Chef" }, { userId: "u-resume" }),
      WebSocket: rec.WebSocket, reconnect, random: () => 1 });
    client.connect();
    const sessionId = client.sessionId;
    const call = await SimCall.connect(relay);
    call.start(sessionId);
    await waitForSnapshot(client, (s) => s.state === "in-call" && s.jobConfig === "applied"
      && s.transcript.some((i) => i.final), "greeting");

    const reconnecting = nextEvent(client, "reconnecting");
    const resumed = nextEvent(client, "resumed");
    rec.sockets[0]!.close(4000, "network drop"); // as if the network dropped under us
    assert.deepEqual(await reconnecting, { attempt: 1, delayMs: t(1_500) });
    assert.equal(connectionNotice(client.getSnapshot()), "Reconnecting… (attempt 1)");
    await relay.waitForHealth((h) => h.connections.frontend === 0 && h.sessions === 1, "frontend gone, call on");

    // The caller keeps talking while the browser is away; the model answers.
    const mediaBefore = call.received.filter((m) => m.event === "media").length;
    call.speak();
    await call.waitFor("media", mediaBefore + 1);

    const { missed, dropped } = await resumed;
    assert.ok(missed > 3, `missed ${missed}`);
    assert.equal(dropped, 0);
    const back = await waitForSnapshot(client, (s) => s.state === "in-call"
      && s.transcript.filter((i) => i.final).length >= 3, "replayed turn");
    assert.equal(back.sessionId, sessionId);
    assert.equal(back.reconnectAttempt, 0);
    assert.deepEqual(back.transcript.slice(0, 3).map((i) => i.role), ["assistant", "user", "assistant"]);
    assert.equal(rec.sockets.length, 2);
    assert.ok(rec.sockets[1]!.url.endsWith(`/logs/${sessionId}?userId=u-resume`));
    assert.ok(!rec.sent.slice(1).some((m) => m.type === "job_config"), "a live call is not reconfigured");

    call.hangUp();
    assert.equal((await waitForState(client, "ended")).endReason, "caller_hung_up");
    client.dispose();
    await relay.waitIdle();
  });

  test("a session still waiting for its call gets its configuration again, even past the grace window", async () => {
    const rec = recordingWebSocket();
    const client = new RelayClient({ ...interviewOptions({ role: "Chef" }, { userId: "u-waiting" }),
      WebSocket: rec.WebSocket, reconnect, random: () => 1 });
    client.connect();
    await waitForSnapshot(client, (s) => s.jobConfig === "queued", "queued");
    const abandonedBefore = (await relay.health()).endedByReason.abandoned ?? 0;
    const reconnecting = nextEvent(client, "reconnecting");
    rec.sockets[0]!.close(4000, "network drop");
    await reconnecting;
    // relay kept the configured session for RELAY_RESUME_GRACE_S (1 s here), then let it go.
    await relay.waitForHealth((h) => (h.endedByReason.abandoned ?? 0) > abandonedBefore && h.sessions === 0,
      "abandoned");
    await waitForSnapshot(client, (s) => s.state === "waiting-for-call" && s.jobConfig === "queued"
      && rec.sockets.length === 2, "configured again");
    assert.deepEqual(rec.sent.map((m) => m.type), ["job_config", "job_config"]);
    const call = await SimCall.connect(relay);
    call.start(client.sessionId);
    await waitForSnapshot(client, (s) => s.state === "in-call" && s.jobConfig === "applied", "applied");
    client.dispose();
    await relay.waitIdle();
  });

  test("a call that ended while the browser was away ends the interview instead of waiting forever", async () => {
    const rec = recordingWebSocket();
    const client = new RelayClient({ ...interviewOptions({ role: "Chef" }, { userId: "u-gone" }),
      WebSocket: rec.WebSocket, reconnect, random: () => 1, resumeCheckMs: t(1_000) });
    client.connect();
    const call = await SimCall.connect(relay);
    call.start(client.sessionId);
    await waitForSnapshot(client, (s) => s.state === "in-call", "in call");
    const reconnecting = nextEvent(client, "reconnecting");
    rec.sockets[0]!.close(4000, "network drop");
    await reconnecting;
    call.hangUp();
    await relay.waitIdle(); // relay ended and forgot the session while we were away
    const ended = await waitForState(client, "ended", t(6_000));
    assert.equal(ended.endReason, "caller_hung_up"); // relay says how it ended
    assert.equal(rec.sockets.length, 2);
    await relay.waitIdle(); // the empty session our reconnect made is gone too
    client.dispose();
  });
});

/** A socket that opens, then closes with `code`: relay's no-retry closes without a relay. */
function closingWith(code: number): { WebSocket: WebSocketConstructor; made: () => number } {
  let made = 0;
  class Closing implements WebSocketLike {
    readyState = 0;
    onopen: ((event: unknown) => unknown) | null = null;
    onmessage: ((event: unknown) => unknown) | null = null;
    onerror: ((event: unknown) => unknown) | null = null;
    onclose: ((event: unknown) => unknown) | null = null;
    constructor() {
      made += 1;
      queueMicrotask(() => {
        this.readyState = 1;
        this.onopen?.({});
        this.readyState = 3;
        this.onclose?.({ code, reason: `closed ${code}` });
      });
    }
    send(): void {}
    close(): void { this.readyState = 3; }
  }
  return { WebSocket: Closing, made: () => made };
}

describe("when not to retry", () => {
  for (const code of [1008, 4009, 4010]) {
    test(`close ${code} ends in connection-lost with no reconnect`, async () => {
      const clock = new FakeClock();
      const socket = closingWith(code);
      const client = new RelayClient({ baseUrl: "ws://127.0.0.1:9", WebSocket: socket.WebSocket, clock });
      client.connect();
      const lost = await waitForState(client, "connection-lost");
      assert.deepEqual(lost.lastError, { kind: "closed", code, message: `closed ${code}` });
      clock.advance(600_000);
      assert.equal(socket.made(), 1);
      assert.equal(clock.pendingTimers, 0);
      client.dispose();
    });
  }

  test("an abnormal close (1006) is retried with back-off, then given up as connection-lost", async () => {
    const clock = new FakeClock();
    const socket = closingWith(1006);
    const client = new RelayClient({ baseUrl: "ws://127.0.0.1:9", WebSocket: socket.WebSocket, clock,
      fetch: async () => { throw new Error("offline"); }, reconnect: { maxAttempts: 3 }, random: () => 0 });
    const delays: number[] = [];
    client.on("reconnecting", ({ delayMs }) => delays.push(delayMs));
    client.connect();
    for (let attempt = 1; attempt <= 3; attempt++) {
      await waitForSnapshot(client, (s) => s.state === "reconnecting" && s.reconnectAttempt === attempt, `attempt ${attempt}`);
      clock.advance(60_000);
    }
    const lost = await waitForState(client, "connection-lost");
    assert.equal(lost.lastError?.kind, "unreachable");
    assert.deepEqual(delays, [250, 500, 1000]);
    assert.equal(socket.made(), 4);
    client.dispose();
  });

  test("the superseded session ends (4010 after `ended`); the new one lives", async () => {
    const recA = recordingWebSocket();
    const a = new RelayClient({ ...interviewOptions({ role: "Chef" }, { userId: "u-two-tabs" }), WebSocket: recA.WebSocket });
    a.connect();
    await waitForSnapshot(a, (s) => s.jobConfig === "queued", "A queued");
    const b = new RelayClient(interviewOptions({ role: "Chef" }, { userId: "u-two-tabs" }));
    b.connect();
    assert.equal((await waitForState(a, "ended")).endReason, "superseded");
    await waitForSnapshot(b, (s) => s.jobConfig === "queued", "B queued");
    assert.equal(recA.sockets.length, 1);
    a.dispose();
    b.dispose();
    await relay.waitIdle();
  });
});
