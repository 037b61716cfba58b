/** What the client sends to relay's HTTP API, seen through a recording fetch (no relay). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { RelayClient, stopAllSessions, type FetchLike } from "../relay-client.js";

type Request = { url: string; init: Parameters<FetchLike>[1] };

function recordingFetch(body: unknown = { stopped: 2 }): { fetch: FetchLike; requests: Request[] } {
  const requests: Request[] = [];
  const fetch: FetchLike = async (url, init) => {
    requests.push({ url, init });
    return { ok: true, status: 200, json: async () => body };
  };
  return { fetch, requests };
}

test("stop-all POSTs JSON with X-Relay-Request, and the Bearer token when there is one", async () => {
  const { fetch, requests } = recordingFetch();
  assert.equal(await stopAllSessions({ baseUrl: "wss://relay.example/", token: "tok", fetch }), 2);
  assert.deepEqual(requests, [{
    url: "https://relay.example/api/sessions/stop_all",
    init: { method: "POST", body: "{}", headers: { "Content-Type": "application/json", "X-Relay-Request": "1",
      Authorization: "Bearer tok" } },
  }]);
});

test("stop-all in development mode names the user in the query and still sends both headers", async () => {
  const { fetch, requests } = recordingFetch();
  await stopAllSessions({ baseUrl: "ws://localhost:8081", httpBaseUrl: "http://api.local/", userId: "u 1", fetch });
  assert.equal(requests[0]!.url, "http://api.local/api/sessions/stop_all?userId=u%201");
  assert.deepEqual(requests[0]!.init?.headers, { "Content-Type": "application/json", "X-Relay-Request": "1" });
});

test("stop-all rejects with the HTTP status when relay refuses", async () => {
  const fetch: FetchLike = async () => ({ ok: false, status: 401, json: async () => ({}) });
  await assert.rejects(stopAllSessions({ baseUrl: "ws://relay", fetch }), /HTTP 401/);
});

test("the unload beacon stays a header-less POST to the session's stop URL, credentials in the query", () => {
  const beacons: string[] = [];
  const client = new RelayClient({ baseUrl: "ws://relay:8081", userId: "u-1", sessionId: "s-1",
    sendBeacon: (url) => { beacons.push(url); return true; }, networkEvents: null });
  assert.equal(client.sendUnloadBeacon(), false, "nothing to stop before connecting");
  assert.equal(client.stopUrl(), "http://relay:8081/api/sessions/s-1/stop?userId=u-1");
  client.setToken("a.b.c");
  assert.equal(client.stopUrl(), "http://relay:8081/api/sessions/s-1/stop?token=a.b.c");
  client.dispose();
  assert.deepEqual(beacons, []);
});
