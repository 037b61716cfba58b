/** "Call me": relay places the interview call to the user's phone. Exercised by
 * test/call-me.test.tsx against a real relay and a fake Twilio API. */
import { useState } from "react";
import type { CallProgress, RelayClient, RelayClientSnapshot } from "../relay-client.js";

// #region call-label
/** The line under the button: where the call is, or what to do about it. */
export function callLabel(call: CallProgress): string {
  switch (call.phase) {
    case "idle": return "";
    case "placing": return "Placing the call…";
    case "queued":
    case "initiated": return `Calling ${call.to ?? "you"}…`;
    case "ringing": return "Ringing: pick up your phone.";
    case "in-progress": return "Connecting you to the interviewer…";
    case "connected": return "You are on the call.";
    // relay's message says what to fix ("give the number in E.164 form, …"); safe to show.
    case "refused": return call.error?.message ?? "The call could not be placed.";
    case "ended":
      switch (call.endReason) {
        case "no_answer": return "No answer. Call again when you can pick up.";
        case "busy": return "Your line was busy. Call again in a moment.";
        case "voicemail": return "Your voicemail picked up, so the interviewer hung up. Call again and answer it yourself.";
        case "call_failed": return "The call did not go through. Check the number and call again.";
        default: return "The call has ended.";
      }
  }
}
// #endregion call-label

// #region call-me-button
const CALLING = new Set<CallProgress["phase"]>(["placing", "queued", "initiated", "ringing", "in-progress"]);

export function CallMeButton({ client, snapshot }: { client: RelayClient; snapshot: RelayClientSnapshot }) {
  const [to, setTo] = useState("");
  const { call } = snapshot;
  const calling = CALLING.has(call.phase);
  // A call nobody answered ends its session (relay's reason: no_answer, busy, voicemail), so
  // calling again starts a new one; placeCall waits for the new socket before it dials.
  const over = snapshot.state === "ended";
  const placeCall = (): void => {
    if (over) client.practiceAgain();
    void client.placeCall(to.trim()); // never rejects: a refusal shows in snapshot.call
  };
  if (call.phase === "connected") return <p role="status">{callLabel(call)}</p>;
  return (
    <form onSubmit={(event) => { event.preventDefault(); placeCall(); }}>
      <input type="tel" placeholder="+15551234567" value={to} disabled={calling}
        onChange={(event) => setTo(event.target.value)} />
      <button type="submit" disabled={calling || to.trim() === ""}>
        {calling ? "Calling…" : over ? "Call me again" : "Call me"}
      </button>
      {calling && <button type="button" onClick={() => void client.endSession()}>Hang up</button>}
      <p role="status">{callLabel(call)}</p>
    </form>
  );
}
// #endregion call-me-button
