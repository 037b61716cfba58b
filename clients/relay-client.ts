/**
 * relay-client: the browser side of relay's `/logs` protocol, dependency-free.
 *
 * A practice interview costs money every minute its phone call and model session stay open,
 * and a browser is the least reliable party: tabs close, laptops sleep, networks drop. This
 * package holds the frontend half of relay's "no zombie sessions" contract so an app does not
 * re-derive it from snippets:
 *
 * - one {@link RelayClient} per interview page; one session (a UUID) at a time, replaced whole
 *   by {@link RelayClient.practiceAgain} so nothing of the last interview leaks into the next;
 * - the job configuration is sent on every open and its `job_config.ack` tracked;
 * - unexpected closes are retried with jittered exponential back-off and resume the same
 *   session (relay replays what was missed), but never after the relay said the call ended,
 *   after an intentional close, or when the relay refused us (bad token, another user's session);
 * - {@link RelayClient.placeCall} has relay call the user ("Call me") and follows the call's
 *   progress in `snapshot.call`;
 * - {@link RelayClient.dispose} ends the interview and releases every socket, timer and listener;
 *   {@link installUnloadBeacon} and {@link stopAllSessions} cover the cases where no code runs.
 *
 * State is one immutable {@link RelayClientSnapshot}, replaced on every change, so React can
 * bind it with `useSyncExternalStore(client.subscribe, client.getSnapshot)`.
 *
 * This file is the entry point; the code is in `src/`:
 *
 * - `state.ts`: every decision, as a pure reducer `(model, event) => [model, commands]`;
 *   `model.ts`: the model, the events and the commands it works with; `calls.ts`: the call
 *   relay places for the session;
 * - `client.ts`: the thin I/O shell (socket, clock, fetch, beacon) that performs the commands;
 * - `protocol.ts`: the messages relay sends and accepts; `transcript.ts`: the transcript built
 *   from the model's events; `api.ts`: relay's URLs and HTTP API (stop-all, placing a call);
 * - `backoff.ts`, `emitter.ts`, `environment.ts` (the page's globals), `unload.ts` (the beacon),
 *   `types.ts` (the public types), `index.ts` (the public API).
 *
 * The protocol itself is documented in relay's docs/protocol.md; the patterns in docs/frontend.md.
 */
export * from "./src/index.js";
