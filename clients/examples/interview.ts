/**
 * Browser side, framework-free: the pieces docs/frontend.md shows, each exercised by a test
 * named next to it.
 */
import {
  RelayClient, installUnloadBeacon, stopAllSessions,
  type JobConfig, type RelayClientOptions, type RelayClientSnapshot,
} from "../relay-client.js";

// #region options
/** Ask our own Next.js route for a token for this session (the secret never leaves the server). */
export async function fetchRelayToken(sessionId: string): Promise<string> {
  const tokenUrl = process.env.NEXT_PUBLIC_RELAY_TOKEN_URL ?? "/api/relay-token";
  const response = await fetch(`${tokenUrl}?sessionId=${encodeURIComponent(sessionId)}`, { method: "POST" });
  if (!response.ok) throw new Error(`token request failed: HTTP ${response.status}`);
  return ((await response.json()) as { token: string }).token;
}

/** With auth on the relay pass `{ token: fetchRelayToken }`; in development `{ userId }`. */
export function interviewOptions(jobConfig: JobConfig,
  auth: { token: typeof fetchRelayToken } | { userId: string }): RelayClientOptions {
  return {
    baseUrl: process.env.NEXT_PUBLIC_WEBSOCKET_SERVER_URL ?? "ws://localhost:8081",
    jobConfig, // sent on every open; relay queues it until the call's model session opens
    ...auth,
  };
}
// #endregion options

// #region job-config-ack
/** The ack, as a line of UI text: "queued" waits for the call, "applied" means the model has it. */
export function jobConfigLabel(status: RelayClientSnapshot["jobConfig"]): string {
  switch (status) {
    case "none": return "";
    case "sending": return "Sending your interview settings…";
    case "queued": return "Settings saved; they apply when the call connects.";
    case "applied": return "The interviewer has your settings.";
    case "rejected": return "The interviewer could not use these settings.";
  }
}
// #endregion job-config-ack

// #region stop-all
/** On app load (e.g. the home page): end sessions a crashed tab or closed laptop left behind. */
export async function cleanUpLingeringSessions(auth: { token: string } | { userId: string }): Promise<number> {
  const baseUrl = process.env.NEXT_PUBLIC_WEBSOCKET_SERVER_URL ?? "ws://localhost:8081";
  try {
    return await stopAllSessions({ baseUrl, ...auth });
  } catch (error) {
    console.error("Cleaning up lingering sessions failed", error); // never block the app on it
    return 0;
  }
}
// #endregion stop-all

// #region lifecycle
/** Everything a page needs for one interview, and the one cleanup that undoes it. */
export function startInterview(options: RelayClientOptions): { client: RelayClient; cleanup: () => void } {
  const client = new RelayClient(options);
  client.trackActivity();         // mouse, keys, touch, tab visible again → throttled "activity"
  installUnloadBeacon(client);    // tab closed or reloaded → sendBeacon to …/stop
  client.connect();
  // dispose() ends the interview, closes the socket and removes the listeners above.
  return { client, cleanup: () => client.dispose() };
}
// #endregion lifecycle

// #region reconnect
/** What the UI says while relay is out of reach; relay replays what was missed on return. */
export function connectionNotice(snapshot: RelayClientSnapshot): string | null {
  switch (snapshot.state) {
    case "reconnecting": return `Reconnecting… (attempt ${snapshot.reconnectAttempt})`;
    case "connection-lost": return "Connection lost.";
    case "disconnecting": return "Disconnecting…";
    default: return null;
  }
}
// #endregion reconnect
