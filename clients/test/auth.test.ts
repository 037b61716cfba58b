/** relay with RELAY_AUTH_SECRET: tokens as a subprotocol, the documented token route (jose),
 * Bearer stop-all, ?token= beacons, and refusals that must not become reconnect storms. */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { RelayClient, installUnloadBeacon, stopAllSessions } from "../relay-client.js";
import { fetchRelayToken, interviewOptions } from "../examples/interview.js";
import { relayTokenRoute } from "../examples/token-route.js";
import {
  FakeClock, FakeDocument, Relay, SECRET, mintJwt, newSessionId, recordingWebSocket, startRelay, waitForSnapshot,
  waitForState,
} from "./support.js";

let relay: Relay;
let tokenServer: Server;
let tokenRequests = 0;

before(async () => {
  relay = await startRelay({ RELAY_AUTH_SECRET: SECRET });
  process.env.NEXT_PUBLIC_WEBSOCKET_SERVER_URL = relay.wsUrl;
  process.env.RELAY_AUTH_SECRET = SECRET;
  // The Next.js route handler from examples/token-route.ts, served as Next would: a web
  // Request in, a web Response out. "Signed in" here means the x-user header.
  const POST = relayTokenRoute(async (request) => request.headers.get("x-user") ?? "bob");
  tokenServer = createServer((req, res) => {
    tokenRequests += 1;
    const request = new Request(`http://127.0.0.1${req.url}`, { method: req.method ?? "POST" });
    void POST(request).then(async (response) => {
      res.writeHead(response.status, { "content-type": "application/json" });
      res.end(await response.text());
    });
  });
  await new Promise<void>((resolve) => tokenServer.listen(0, "127.0.0.1", resolve));
  process.env.NEXT_PUBLIC_RELAY_TOKEN_URL = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/api/relay-token`;
});
after(async () => {
  await relay.stop();
  await new Promise((resolve) => tokenServer.close(resolve));
});

describe("with a valid token", () => {
  test("a token minted with node:crypto connects; stop-all with Bearer ends the user's session", async () => {
    const rec = recordingWebSocket();
    const client = new RelayClient({ baseUrl: relay.wsUrl, jobConfig: { role: "Chef" }, WebSocket: rec.WebSocket,
      token: (sessionId) => mintJwt({ sub: "alice", sid: sessionId }) });
    client.connect();
    await waitForSnapshot(client, (s) => s.jobConfig === "queued", "queued");
    // The token rode as the second subprotocol, stayed out of the URL, and relay chose relay.v1.
    assert.equal(rec.sockets[0]!.protocol, "relay.v1");
    assert.equal(rec.sockets[0]!.url, `${relay.wsUrl}/logs/${client.sessionId}`);
    await assert.rejects(stopAllSessions({ baseUrl: relay.wsUrl }), /HTTP 401/);
    assert.equal(await stopAllSessions({ baseUrl: relay.wsUrl, token: mintJwt({ sub: "mallory" }) }), 0);
    assert.equal(await stopAllSessions({ baseUrl: relay.wsUrl, token: mintJwt({ sub: "alice" }) }), 1);
    assert.equal((await waitForState(client, "ended")).endReason, "stopped");
    client.dispose();
    await relay.waitIdle();
  });

  test("the documented jose token route issues tokens relay accepts; the beacon carries ?token=", async () => {
    const beacons: string[] = [];
    const sendBeacon = (url: string): boolean => { beacons.push(url); void fetch(url, { method: "POST" }); return true; };
    const win = new FakeDocument();
    const client = new RelayClient({ ...interviewOptions({ role: "Chef" }, { token: fetchRelayToken }), sendBeacon });
    installUnloadBeacon(client, win);
    const before = tokenRequests;
    client.connect();
    await waitForSnapshot(client, (s) => s.jobConfig === "queued", "queued");
    assert.equal(tokenRequests, before + 1, "one token per connection");
    win.fire("beforeunload");
    assert.equal(beacons.length, 1);
    assert.match(beacons[0]!, new RegExp(`/api/sessions/${client.sessionId}/stop\\?token=ey`));
    assert.equal((await waitForState(client, "ended")).endReason, "stopped");
    client.dispose();
    await relay.waitIdle();
  });
});

describe("refusals", () => {
  const cases: Array<[string, (sessionId: string) => string]> = [
    ["a malformed token", () => "not.a.token"],
    ["a token signed with another secret", (sid) => mintJwt({ sub: "alice", sid }, "x".repeat(40))],
    ["a token for another session", () => mintJwt({ sub: "alice", sid: newSessionId() })],
    ["an expired token", (sid) => mintJwt({ sub: "alice", sid, ttlS: -60 })],
  ];
  for (const [what, token] of cases) {
    test(`${what} ends in connection-lost after one attempt (no reconnect storm)`, async () => {
      const rec = recordingWebSocket();
      const clock = new FakeClock();
      const client = new RelayClient({ baseUrl: relay.wsUrl, token, WebSocket: rec.WebSocket, clock });
      client.connect();
      const lost = await waitForState(client, "connection-lost");
      assert.equal(lost.lastError?.kind, "refused");
      clock.advance(600_000);
      assert.equal(rec.sockets.length, 1);
      assert.equal(clock.pendingTimers, 0);
      assert.equal(client.state, "connection-lost");
      client.dispose();
    });
  }

  test("retry() after connection-lost tries once more, with a fresh token", async () => {
    let good = false;
    const client = new RelayClient({ baseUrl: relay.wsUrl, jobConfig: { role: "Chef" },
      token: (sid) => (good ? mintJwt({ sub: "carol", sid }) : "not.a.token") });
    client.connect();
    await waitForState(client, "connection-lost");
    good = true;
    client.retry();
    await waitForSnapshot(client, (s) => s.state === "waiting-for-call" && s.jobConfig === "queued", "connected");
    client.dispose();
    await relay.waitIdle();
  });
});
