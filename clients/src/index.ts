/** The public API: what `relay-client.ts` exports, module by module. */
export { RelayClient } from "./client.js";
export { installUnloadBeacon } from "./unload.js";
export { httpBaseFrom, stopAllSessions } from "./api.js";
export { backoffDelay } from "./backoff.js";
export { randomSessionId } from "./environment.js";
export { Emitter } from "./emitter.js";
export { NO_RETRY_CLOSE_CODES, type JobConfig, type RelayMessage } from "./protocol.js";
export type {
  BackoffPolicy, BeaconSender, CallPhase, CallProgress, Clock, Countdown, EventTargetLike, FetchLike, JobConfigStatus,
  PlaceCallError, PlaceCallErrorCode, PlaceCallResult, RelayClientError, RelayClientEvents, RelayClientOptions,
  RelayClientSnapshot, RelayState, TokenSource, TranscriptItem, WebSocketConstructor, WebSocketLike,
} from "./types.js";
