/** The interview UI's states, countdown and buttons. Exercised by test/react.test.tsx. */
import type { RelayClientOptions } from "../relay-client.js";
import { connectionNotice, jobConfigLabel } from "./interview.js";
import { useInterview } from "./useInterview.js";

// #region panel
const STATUS: Record<string, string> = {
  idle: "", connecting: "Connecting…", "waiting-for-call": "Waiting for the call…",
  "in-call": "Interview in progress", ended: "Interview ended",
};

export function InterviewPanel({ options }: { options: RelayClientOptions }) {
  const { client, snapshot } = useInterview(options);
  if (!client || !snapshot) return <p>Connecting…</p>;
  const warning = snapshot.inactivityWarning;
  const live = snapshot.state === "waiting-for-call" || snapshot.state === "in-call";
  return (
    <section>
      <p role="status">{connectionNotice(snapshot) ?? STATUS[snapshot.state]}</p>
      <p>{jobConfigLabel(snapshot.jobConfig)}</p>
      {warning && (
        <div role="alert">
          Still there? This interview ends in {Math.ceil(warning.remainingMs / 1000)} s.
          <button onClick={() => client.continueSession()}>Continue</button>
        </div>
      )}
      {snapshot.durationWarning && (
        <p>Time is almost up: {Math.ceil(snapshot.durationWarning.remainingMs / 60_000)} min left.</p>
      )}
      <ol>
        {snapshot.transcript.map((item) => (
          <li key={item.id} data-role={item.role}>{item.text}</li>
        ))}
      </ol>
      {live && <button onClick={() => void client.endSession()}>End interview</button>}
      {snapshot.state === "connection-lost" && <button onClick={() => client.retry()}>Try again</button>}
      {(snapshot.state === "ended" || snapshot.state === "connection-lost") && (
        <button onClick={() => client.practiceAgain()}>Practice again</button>
      )}
    </section>
  );
}
// #endregion panel
