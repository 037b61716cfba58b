/** The reconnect policy as pure functions (websockets' `backoff()` is the model). */
import type { BackoffPolicy } from "./types.js";

/** 0.5 s, 1 s, 2 s, … capped at 15 s; "connection-lost" after 10 retries. */
export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 15_000, factor: 2, maxAttempts: 10 };

/** Delay before reconnect attempt `attempt` (0-based): exponential, capped, "equal jitter"
 * (half fixed, half random) so a relay restart is not hit by every tab at the same instant. */
export function backoffDelay(attempt: number, policy: Pick<BackoffPolicy, "initialMs" | "maxMs"
  | "factor">, random: () => number = Math.random): number {
  const base = Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, attempt));
  return Math.round(base / 2 + (random() * base) / 2);
}
