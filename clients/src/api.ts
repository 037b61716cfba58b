/**
 * relay's addresses and HTTP API as the browser uses them (docs/protocol.md "HTTP endpoints"):
 * the `/logs` socket URL, `/health`, the per-session stop the unload beacon calls, and
 * stop-all.
 */
import type { FetchLike } from "./types.js";

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
