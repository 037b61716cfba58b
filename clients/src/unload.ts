/** The unload beacon: the one way to end a session when the tab closes and no code runs. */
import type { RelayClient } from "./client.js";
import { pageWindow } from "./environment.js";
import type { EventTargetLike } from "./types.js";

/** On `beforeunload` (and `pagehide`, which mobile browsers fire instead) tell relay to stop the
 * session: React cleanups do not run to completion on a closing tab, a beacon does. Returns the
 * uninstall function; `dispose()` uninstalls too. */
export function installUnloadBeacon(client: RelayClient, target?: EventTargetLike): () => void {
  const t = target ?? pageWindow();
  if (!t) return () => {};
  let sentFor: string | null = null;
  const onUnload = (): void => {
    if (sentFor === client.sessionId) return; // both events fire on a desktop close
    if (client.sendUnloadBeacon()) sentFor = client.sessionId;
  };
  t.addEventListener("beforeunload", onUnload);
  t.addEventListener("pagehide", onUnload);
  const removeCleanup = client.addCleanup(() => uninstall());
  function uninstall(): void {
    t!.removeEventListener("beforeunload", onUnload);
    t!.removeEventListener("pagehide", onUnload);
    removeCleanup();
  }
  return uninstall;
}
