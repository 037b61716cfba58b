/** The 8-minute warning (here: fractions of a second) and the duration warning, end to end. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { RelayClient } from "../relay-client.js";
import { interviewOptions } from "../examples/interview.js";
import {
  Relay, SimCall, nextEvent, recordingWebSocket, startRelay, t, waitForSnapshot, waitForState,
} from "./support.js";

const WARN_S = t(500) / 1000;
const TIMEOUT_S = t(2_000) / 1000;

let relay: Relay;
before(async () => {
  relay = await startRelay({
    RELAY_INACTIVITY_WARNING_S: String(WARN_S),
    RELAY_INACTIVITY_TIMEOUT_S: String(TIMEOUT_S),
    // The hard cap is warned about at once (19.5 s ahead of a 20 s cap).
    RELAY_MAX_SESSION_S: "20",
    RELAY_DURATION_WARNING_S: "19.5",
  });
  process.env.NEXT_PUBLIC_WEBSOCKET_SERVER_URL = relay.wsUrl;
});
after(async () => { await relay.stop(); });

test("the inactivity warning is a countdown; continueSession() clears it; silence then ends the session", async () => {
  const client = new RelayClient(interviewOptions({ role: "Chef" }, { userId: "u-warn" }));
  client.connect();
  const warned = await waitForSnapshot(client, (s) => s.inactivityWarning !== null, "inactivity warning", t(5_000));
  const countdown = warned.inactivityWarning!;
  assert.equal(countdown.kind, "inactivity");
  assert.ok(countdown.remainingMs > 0 && countdown.remainingMs <= (TIMEOUT_S - WARN_S) * 1000 + 50,
    `remaining ${countdown.remainingMs} ms`);

  // It ticks once a second while shown (what the UI re-renders on).
  const tick = await nextEvent(client, "warning", (w) => w.kind === "inactivity" && w.countdown !== null
    && w.countdown.remainingMs < countdown.remainingMs);
  assert.ok(tick.countdown!.remainingMs <= countdown.remainingMs - 900);

  // "Continue": relay answers session.inactivity_warning_cleared and the countdown goes.
  assert.equal(client.continueSession(), true);
  await waitForSnapshot(client, (s) => s.inactivityWarning === null, "warning cleared");
  assert.equal(client.state, "waiting-for-call");

  // The user walks away for good: warned again, then relay ends the session for inactivity.
  await waitForSnapshot(client, (s) => s.inactivityWarning !== null, "second warning", t(5_000));
  const ended = await waitForState(client, "ended", t(5_000));
  assert.equal(ended.endReason, "inactivity");
  assert.equal(ended.inactivityWarning, null, "no countdown left on screen");
  client.dispose();
  await relay.waitIdle();
});

test("the duration warning counts down to the hard cap", async () => {
  const client = new RelayClient(interviewOptions({ role: "Chef" }, { userId: "u-duration" }));
  client.connect();
  const warned = await waitForSnapshot(client, (s) => s.durationWarning !== null, "duration warning", t(5_000));
  assert.equal(warned.durationWarning!.kind, "duration");
  assert.ok(warned.durationWarning!.remainingMs > 15_000 && warned.durationWarning!.remainingMs <= 20_000);
  client.dispose();
  await relay.waitIdle();
});

test("a warning given while the browser was away is not shown again: reconnecting was activity", async () => {
  const rec = recordingWebSocket();
  const client = new RelayClient({ ...interviewOptions({ role: "Chef" }, { userId: "u-stale" }),
    WebSocket: rec.WebSocket, reconnect: { initialMs: t(1_000) }, random: () => 1 });
  client.connect();
  const call = await SimCall.connect(relay);
  call.start(client.sessionId);
  await waitForSnapshot(client, (s) => s.state === "in-call", "in call");
  const reconnecting = nextEvent(client, "reconnecting");
  rec.sockets[0]!.close(4000, "network drop");
  await reconnecting;
  // The warning fires while no frontend is attached. Warnings are state, not
  // history: relay does not replay it, and reattaching counts as activity.
  await relay.waitForSessions((rows) => rows.some((r) => r.warnings.includes("inactivity") && r.frontends === 0),
    "warning while away");
  const seen: string[] = [];
  client.on("message", (m) => { seen.push(m.type); });
  await relay.waitForSessions((rows) => rows.some((r) => r.frontends === 1 && !r.warnings.includes("inactivity")),
    "reattached, warning cleared");
  await waitForSnapshot(client, (s) => s.state === "in-call", "in call again");
  assert.ok(!seen.includes("session.inactivity_warning"), seen.join(", "));
  assert.equal(client.getSnapshot().inactivityWarning, null);
  assert.equal(client.state, "in-call");
  call.hangUp();
  await waitForState(client, "ended");
  client.dispose();
  await relay.waitIdle();
});
