/**
 * What the client takes from the page when the options do not inject it: the clock, the
 * WebSocket class, fetch, `navigator.sendBeacon`, `document`, `window` and `crypto`. The one
 * place that reads globals, so server-side rendering and tests know what to pass.
 */
import type { BeaconSender, Clock, EventTargetLike, FetchLike, WebSocketConstructor } from "./types.js";

export const defaultClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
};

type Globals = {
  WebSocket?: WebSocketConstructor;
  document?: EventTargetLike;
  window?: EventTargetLike;
  navigator?: { sendBeacon?: (url: string) => boolean };
};
const page = globalThis as Globals;

export const pageWebSocket = (): WebSocketConstructor | undefined => page.WebSocket;
export const pageDocument = (): EventTargetLike | undefined => page.document;
export const pageWindow = (): EventTargetLike | undefined => page.window;

export function pageFetch(): FetchLike | undefined {
  return (globalThis.fetch as FetchLike | undefined)?.bind(globalThis);
}

/** `navigator.sendBeacon`, or where it is missing a keepalive fetch (which lets the request
 * outlive the page). Like a beacon, the fallback sends no headers: relay's stop endpoint
 * takes its credentials from the query, and a header would need a CORS preflight that a page
 * being unloaded may not live to finish. */
export function pageBeacon(fetcher: FetchLike | undefined): BeaconSender {
  const nav = page.navigator;
  if (typeof nav?.sendBeacon === "function") return (url) => nav.sendBeacon!(url);
  return (url) => {
    void fetcher?.(url, { method: "POST", keepalive: true }).catch(() => {});
    return true;
  };
}

/** A v4 UUID for a session. `crypto.randomUUID` exists only in secure contexts (https,
 * localhost); a dev server opened by LAN address still has `getRandomValues`. */
export function randomSessionId(crypto: Pick<Crypto, "getRandomValues"> & Partial<Pick<Crypto,
  "randomUUID">> = globalThis.crypto): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40; // version 4
  b[8] = (b[8]! & 0x3f) | 0x80; // RFC 4122 variant
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
