/**
 * What each relay message does to the interview (docs/frontend.md "Messages the client
 * handles"): the ack, the call's status (and a placed call's progress, calls.ts), warnings,
 * the replay, errors, and the transcript.
 */
import { callConnected, callProgressed } from "./calls.js";
import { decode, type RelayMessage } from "./protocol.js";
import { applyModelEvent, visibleLines } from "./transcript.js";
import type { Transition } from "./transition.js";

const JOB_CONFIG_REFUSALS = new Set(["invalid_job_config", "config_rejected"]);

/** A message from the open socket (null: a frame that is not a message). */
export function receive(t: Transition, message: RelayMessage | null, now: number): void {
  if (!message) return t.report({ kind: "protocol", message: "relay sent a frame that is not a message" });
  // relay answered, so this connection works: the retry budget starts over.
  if (t.model.snapshot.reconnectAttempt) t.update({ reconnectAttempt: 0 });
  if (t.model.standing === "refused-once") t.set({ standing: "opened" });
  const replayed = t.model.replayLeft > 0;
  if (replayed) t.set({ replayLeft: t.model.replayLeft - 1 });
  const { state } = t.model.snapshot;
  const event = decode(message);
  switch (event.type) {
    case "session.associated":
      t.cancel("resume");
      t.set({ rejoin: "session" });
      t.update({ callSid: event.callSid });
      callConnected(t);
      if (state !== "disconnecting") t.setState("in-call");
      return;
    case "call.progress":
      return callProgressed(t, event.status);
    case "call.status_changed":
      if (event.status === null) return;
      t.emit("callStatus", { status: event.status, reason: event.reason });
      if (event.status === "connected") {
        callConnected(t);
        if (state !== "disconnecting") t.setState("in-call");
        return;
      }
      // relay closes right after; closing first means no close event to misread as a drop.
      return t.finish(event.reason ?? "ended");
    case "job_config.ack":
      if (event.status) t.setJobConfig(event.status);
      return;
    case "session.inactivity_warning":
      // A warning replayed after a reconnect is stale: reconnecting was activity.
      if (!replayed) t.startCountdown("inactivity", event.disconnectInMs, now);
      return;
    case "session.inactivity_warning_cleared":
      return t.setCountdown("inactivity", null);
    case "session.duration_warning":
      return t.startCountdown("duration", event.endsInMs, now);
    case "session.resumed":
      t.set({ replayLeft: event.missed });
      return t.emit("resumed", { missed: event.missed, dropped: event.dropped });
    case "error":
      if (JOB_CONFIG_REFUSALS.has(event.code)) t.setJobConfig("rejected");
      return t.report({ kind: "server", code: event.code, message: event.message });
    case "model": {
      const { lines, changed } = applyModelEvent(t.model.lines, event.message);
      if (!changed) return;
      t.set({ lines });
      t.update({ transcript: visibleLines(lines) });
      if (changed.text !== "") t.emit("transcript", changed);
      return;
    }
    default:
      return assertNever(event);
  }
}

function assertNever(value: never): never {
  throw new Error(`unhandled relay event: ${JSON.stringify(value)}`);
}
