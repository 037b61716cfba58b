/**
 * relay's `/logs` protocol as the browser sees it (the reference is docs/protocol.md): the
 * messages the client sends, the relay messages it acts on, decoded into one typed union, and
 * the close codes after which it must not retry. No I/O.
 */

/** The interview to run (relay's `job_config.config`; every field optional). */
export interface JobConfig {
  role?: string; company?: string; jobDescription?: string; interviewStyle?: string;
  instructions?: string; voice?: string; candidateName?: string; language?: string;
  durationMinutes?: number;
}

/** A message from relay: `type` plus whatever fields that type carries. */
export interface RelayMessage {
  readonly type: string;
  readonly [field: string]: unknown;
}

/** The one subprotocol relay speaks; a token rides beside it as a second one. */
export const SUBPROTOCOL = "relay.v1";

/** Close codes after which retrying cannot help (README "Close codes"): policy violation
 * (another user's session), a second call, and superseded by the user's newer session. */
export const NO_RETRY_CLOSE_CODES: ReadonlySet<number> = new Set([1008, 4009, 4010]);

/** What the client itself sends (apps send anything else relay accepts with `client.send`). */
export type ClientMessage =
  | { readonly type: "job_config"; readonly config: JobConfig }
  | { readonly type: "activity" }
  | { readonly type: "session.end" };

/** Twilio's words for a placed call before its stream starts (relay passes them on). */
export type DialStatus = "queued" | "initiated" | "ringing" | "in-progress";
const DIAL_STATUSES: ReadonlySet<string> = new Set<DialStatus>(["queued", "initiated", "ringing", "in-progress"]);

/** A relay message the client acts on, its fields checked; `model` is everything else (the
 * model's events, which the transcript reads, and types the client only passes on). */
export type RelayEvent =
  | { readonly type: "session.associated"; readonly callSid: string | null }
  | { readonly type: "call.status_changed"; readonly status: "connected" | "ended" | null;
      readonly reason: string | null }
  // `call.status_changed` with Twilio's progress of a call relay placed (before `connected`)
  | { readonly type: "call.progress"; readonly status: DialStatus }
  | { readonly type: "job_config.ack"; readonly status: "queued" | "applied" | null }
  | { readonly type: "session.inactivity_warning"; readonly disconnectInMs: number }
  | { readonly type: "session.inactivity_warning_cleared" }
  | { readonly type: "session.duration_warning"; readonly endsInMs: number }
  | { readonly type: "session.resumed"; readonly missed: number; readonly dropped: number }
  | { readonly type: "error"; readonly code: string; readonly message: string }
  | { readonly type: "model"; readonly message: RelayMessage };

/** A WebSocket frame as a message, or null when it is not a JSON object with a string `type`. */
export function parseFrame(data: unknown): RelayMessage | null {
  if (typeof data !== "string") return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return null;
  }
  if (!parsed || typeof parsed !== "object" || typeof (parsed as RelayMessage).type !== "string") return null;
  return parsed as RelayMessage;
}

const text = (value: unknown): string | null => (typeof value === "string" ? value : null);

/** The typed form of `message`; a field of the wrong type reads as absent. */
export function decode(message: RelayMessage): RelayEvent {
  switch (message.type) {
    case "session.associated":
      return { type: message.type, callSid: text(message.callSid) };
    case "call.status_changed": {
      if (typeof message.status === "string" && DIAL_STATUSES.has(message.status)) {
        return { type: "call.progress", status: message.status as DialStatus };
      }
      const status = message.status === "connected" || message.status === "ended" ? message.status : null;
      return { type: message.type, status, reason: text(message.reason) };
    }
    case "job_config.ack": {
      const status = message.status === "queued" || message.status === "applied" ? message.status : null;
      return { type: message.type, status };
    }
    case "session.inactivity_warning":
      return { type: message.type, disconnectInMs: Number(message.disconnectInMs) };
    case "session.inactivity_warning_cleared":
      return { type: message.type };
    case "session.duration_warning":
      return { type: message.type, endsInMs: Number(message.endsInMs) };
    case "session.resumed":
      return { type: message.type, missed: Number(message.missed) || 0, dropped: Number(message.dropped) || 0 };
    case "error":
      // The model's own errors are forwarded with source "model": they are the model's events,
      // not a refusal of what this client sent (relay's own errors say source "relay").
      if (message.source === "model") return { type: "model", message };
      return { type: message.type, code: String(message.code ?? "error"), message: String(message.message ?? "") };
    default:
      return { type: "model", message };
  }
}
