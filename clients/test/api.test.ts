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

/** A socket that opens as soon as the client has set its handlers (relay is not needed here). */
class OpeningSocket {
  readyState = 0;
  onopen: ((event: unknown) => unknown) | null = null;
  onmessage: ((event: unknown) => unknown) | null = null;
  onerror: ((event: unknown) => unknown) | null = null;
  onclose: ((event: unknown) => unknown) | null = null;
  constructor() { queueMicrotask(() => { this.readyState = 1; this.onopen?.({}); }); }
  send(): void {}
  close(): void { this.readyState = 3; }
}

test("placeCall POSTs {to, sessionId} to /api/calls with both headers and a Bearer token from the token source", async () => {
  const { fetch, requests } = recordingFetch({ callSid: "CA1", sessionId: "s-1", status: "queued" });
  const tokensFor: string[] = [];
  const client = new RelayClient({ baseUrl: "wss://relay.example", sessionId: "s-1", WebSocket: OpeningSocket,
    fetch: async (url, init) => ({ ...(await fetch(url, init)), status: 201 }), networkEvents: null,
    token: (sessionId) => { tokensFor.push(sessionId); return `tok-${tokensFor.length}`; } });
  const result = await client.placeCall("+15551234567");
  assert.deepEqual(result, { ok: true, callSid: "CA1", sessionId: "s-1", status: "queued" });
  assert.deepEqual(tokensFor, ["s-1", "s-1"], "one token for the socket, one for the POST");
  assert.deepEqual(requests, [{ url: "https://relay.example/api/calls", init: { method: "POST",
    body: JSON.stringify({ to: "+15551234567", sessionId: "s-1" }),
    headers: { "Content-Type": "application/json", "X-Relay-Request": "1", Authorization: "Bearer tok-2" } } }]);
  assert.deepEqual([client.getSnapshot().call.phase, client.getSnapshot().call.callSid], ["queued", "CA1"]);
  client.dispose();
});

test("placeCall in development mode names the user in the query", async () => {
  const { fetch, requests } = recordingFetch({ callSid: "CA1", sessionId: "s-1", status: "queued" });
  const client = new RelayClient({ baseUrl: "ws://relay:8081", userId: "u 1", sessionId: "s-1",
    WebSocket: OpeningSocket, fetch, networkEvents: null });
  await client.placeCall("+15551234567");
  assert.equal(requests[0]!.url, "http://relay:8081/api/calls?userId=u%201");
  assert.deepEqual(requests[0]!.init?.headers, { "Content-Type": "application/json", "X-Relay-Request": "1" });
  client.dispose();
});

test("placeCall never rejects: a failed request, a proxy's page and a failing token source are results", async () => {
  const attempt = async (options: Partial<ConstructorParameters<typeof RelayClient>[0]>) => {
    const client = new RelayClient({ baseUrl: "ws://relay", userId: "u", WebSocket: OpeningSocket, networkEvents: null,
      ...options });
    const result = await client.placeCall("+15551234567");
    client.dispose();
    return result.ok ? null : result.error;
  };
  const down = await attempt({ fetch: async () => { throw new TypeError("fetch failed"); } });
  assert.deepEqual([down?.code, down?.status], ["unreachable", null]);
  const proxy = await attempt({ fetch: async () => ({ ok: false, status: 502, json: async () => { throw new SyntaxError("<html>"); } }) });
  assert.deepEqual(proxy, { code: "http_502", message: "relay answered HTTP 502", status: 502 });
  let tokens = 0;
  const token = await attempt({ fetch: recordingFetch().fetch,
    token: () => { tokens += 1; if (tokens > 1) throw new Error("signed out"); return "tok"; } });
  assert.deepEqual([token?.code, token?.status], ["token", null]);
});
