/**
 * relay's addresses and HTTP API as the browser uses them (docs/protocol.md "HTTP endpoints"):
 * the `/logs` socket URL, `/health`, the per-session stop the unload beacon calls, stop-all,
 * and placing the session's call (`POST /api/calls`).
 */
import type { FetchLike, PlaceCallResult } from "./types.js";

/** The headers every POST to relay's API carries. A cross-site page can make a "simple" POST
 * (a form, a no-cors fetch) without asking; with these it must pass relay's CORS preflight,
 * which only allowed origins do. The unload beacon cannot set headers: it POSTs to the one
 * session's stop URL with the credentials in the query. */
export const API_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "Content-Type": "application/json",
  "X-Relay-Request": "1",
});

/** `ws://host` → `http://host`, `wss://host` → `https://host` (trailing slash dropped). */
export function httpBaseFrom(baseUrl: string): string {
  return baseUrl.replace(/^ws(s?):\/\//i, "http$1://").replace(/\/+$/, "");
}

/** `http://host` → `ws://host`, `https://host` → `wss://host` (trailing slash dropped). */
export function wsBaseFrom(baseUrl: string): string {
  return baseUrl.replace(/^http(s?):\/\//i, "ws$1://").replace(/\/+$/, "");
}

/** `?token=…`, or `?userId=…` in development mode, or nothing. */
export function credentialQuery(credentials: { token?: string | undefined; userId?: string | undefined }): string {
  if (credentials.token) return `?token=${encodeURIComponent(credentials.token)}`;
  return credentials.userId ? `?userId=${encodeURIComponent(credentials.userId)}` : "";
}

export const logsUrl = (wsBase: string, sessionId: string, query: string): string =>
  `${wsBase}/logs/${encodeURIComponent(sessionId)}${query}`;

export const stopUrl = (httpBase: string, sessionId: string, query: string): string =>
  `${httpBase}/api/sessions/${encodeURIComponent(sessionId)}/stop${query}`;

export const healthUrl = (httpBase: string): string => `${httpBase}/health`;

export const callsUrl = (httpBase: string, query: string): string => `${httpBase}/api/calls${query}`;

/** `POST /api/calls {to, sessionId}` (docs/protocol.md "Outbound calls"): the user's token as
 * Bearer, or `?userId=` in development mode. Never rejects: a refusal, a failed request or a
 * failed token source is an `ok: false` result. */
export async function requestCall(options: { httpBase: string; sessionId: string; to: string;
  token: () => string | undefined | Promise<string | undefined>; userId?: string | undefined;
  fetch: FetchLike | undefined }): Promise<PlaceCallResult> {
  const { fetch: fetcher, sessionId, to } = options;
  if (!fetcher) return failed("unreachable", "no fetch here: pass options.fetch");
  let token: string | undefined;
  try {
    token = await options.token();
  } catch (error) {
    return failed("token", `the token source failed: ${String(error)}`);
  }
  let status: number;
  let body: unknown;
  try {
    const response = await fetcher(callsUrl(options.httpBase, token ? "" : credentialQuery({ userId: options.userId })), {
      method: "POST",
      headers: token ? { ...API_HEADERS, Authorization: `Bearer ${token}` } : { ...API_HEADERS },
      body: JSON.stringify({ to, sessionId }),
    });
    status = response.status;
    body = await response.json().catch(() => null);
  } catch (error) {
    return failed("unreachable", `relay could not be reached: ${String(error)}`);
  }
  return callAnswer(status, body);
}

/** relay's answer to `POST /api/calls` as a result; pure. */
export function callAnswer(status: number, body: unknown): PlaceCallResult {
  const fields = (body && typeof body === "object" ? body : {}) as Record<string, unknown>;
  if (status === 201 && typeof fields.callSid === "string") {
    return { ok: true, callSid: fields.callSid, sessionId: String(fields.sessionId ?? ""),
      status: typeof fields.status === "string" ? fields.status : "queued" };
  }
  return { ok: false, error: {
    code: typeof fields.error === "string" ? fields.error : `http_${status}`,
    message: typeof fields.message === "string" ? fields.message : `relay answered HTTP ${status}`,
    status,
  } };
}

const failed = (code: string, message: string): PlaceCallResult => ({ ok: false, error: { code, message, status: null } });

/** When the app loads: end the user's lingering sessions (a crashed tab, a closed laptop).
 * Resolves with how many relay stopped. */
export async function stopAllSessions(options: { baseUrl: string; httpBaseUrl?: string;
  token?: string; userId?: string; fetch?: FetchLike }): Promise<number> {
  const fetcher = options.fetch ?? (globalThis.fetch as FetchLike);
  const base = (options.httpBaseUrl ?? httpBaseFrom(options.baseUrl)).replace(/\/+$/, "");
  const query = options.token ? "" : credentialQuery({ userId: options.userId });
  const response = await fetcher(`${base}/api/sessions/stop_all${query}`, {
    method: "POST",
    headers: options.token ? { ...API_HEADERS, Authorization: `Bearer ${options.token}` } : { ...API_HEADERS },
    body: "{}",
  });
  if (!response.ok) throw new Error(`stop_all failed: HTTP ${response.status}`);
  const body = (await response.json()) as { stopped?: unknown };
  return typeof body.stopped === "number" ? body.stopped : 0;
}
