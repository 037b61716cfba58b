/** React bindings for one interview page. Exercised by test/react.test.tsx. */
import { useEffect, useState } from "react";
import type { RelayClient, RelayClientOptions, RelayClientSnapshot } from "../relay-client.js";
import { cleanUpLingeringSessions, startInterview } from "./interview.js";

// #region use-interview
/** One RelayClient per mount. Under StrictMode React mounts, unmounts and mounts again: the
 * first client is disposed (its session ended) and the second starts its own, so nothing is
 * shared between them. */
export function useInterview(options: RelayClientOptions): {
  client: RelayClient | null;
  snapshot: RelayClientSnapshot | null;
} {
  const [client, setClient] = useState<RelayClient | null>(null);
  const [snapshot, setSnapshot] = useState<RelayClientSnapshot | null>(null);
  useEffect(() => {
    const { client, cleanup } = startInterview(options);
    const unsubscribe = client.subscribe(() => setSnapshot(client.getSnapshot()));
    setClient(client);
    setSnapshot(client.getSnapshot());
    return () => {
      unsubscribe();
      cleanup(); // unmount: end the interview, close the socket, clear timers and listeners
    };
    // The options of the first render win: a new interview is practiceAgain(), not a new client.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  return { client, snapshot };
}
// #endregion use-interview

// #region use-stop-all
/** Once per app load, before any interview starts (e.g. in the root layout's client component). */
export function useStopAllOnLoad(auth: { token: string } | { userId: string } | null): void {
  const key = auth ? JSON.stringify(auth) : null;
  useEffect(() => {
    if (auth) void cleanUpLingeringSessions(auth);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
}
// #endregion use-stop-all
