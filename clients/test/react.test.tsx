/** The React bindings of docs/frontend.md, rendered for real (react-test-renderer, concurrent
 * root, StrictMode) against a real relay: useInterview, InterviewPanel, useStopAllOnLoad. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { StrictMode } from "react";
import TestRenderer, {
  act, type ReactTestInstance, type ReactTestRenderer, type TestRendererOptions,
} from "react-test-renderer";
import { RelayClient } from "../relay-client.js";
import { interviewOptions } from "../examples/interview.js";
import { InterviewPanel } from "../examples/InterviewPanel.js";
import { useStopAllOnLoad } from "../examples/useInterview.js";
import { FakeDocument, Relay, SimCall, WAIT, startRelay, t, waitForState } from "./support.js";


let relay: Relay;
// `document` and `window` for trackActivity() and installUnloadBeacon()'s defaults.
const doc = new FakeDocument();
const win = new FakeDocument();

before(async () => {
  relay = await startRelay({ RELAY_INACTIVITY_WARNING_S: String(t(1_500) / 1000) });
  process.env.NEXT_PUBLIC_WEBSOCKET_SERVER_URL = relay.wsUrl;
  // React's act() environment; the "native test environment" flag keeps react-test-renderer 19
  // from printing its deprecation notice (it is still the lightest real renderer for Node).
  Object.assign(globalThis, { document: doc, window: win, IS_REACT_ACT_ENVIRONMENT: true,
    IS_REACT_NATIVE_TEST_ENVIRONMENT: true });
});
after(async () => { await relay.stop(); });

/** A concurrent root, as Next.js renders (StrictMode then really mounts effects twice);
 * the option is missing from @types/react-test-renderer. */
const CONCURRENT = { unstable_isConcurrent: true } as unknown as TestRendererOptions;

function text(node: ReactTestInstance | string): string {
  return typeof node === "string" ? node : node.children.map(text).join("");
}

/** Wait until the rendered tree satisfies `check`; React updates are flushed through act(). */
async function rendered(renderer: ReactTestRenderer, check: (root: ReactTestInstance) => boolean,
  what: string, timeoutMs = WAIT): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check(renderer.root)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${text(renderer.root)}`);
    // Let socket events in, then flush the updates they caused.
    await act(() => new Promise<void>((resolve) => setTimeout(resolve, 20)));
  }
}

const status = (root: ReactTestInstance): string => text(root.findByProps({ role: "status" }));
const button = (root: ReactTestInstance, label: string): ReactTestInstance =>
  root.find((n) => n.type === "button" && text(n) === label);
const hasButton = (root: ReactTestInstance, label: string): boolean =>
  root.findAll((n) => n.type === "button" && text(n) === label).length > 0;

test("InterviewPanel: StrictMode mount, ack, call, transcript, countdown, end, practice again, unmount", async () => {
  const sessions: string[] = [];
  const options = { ...interviewOptions({ role: "Chef" }, { userId: "u-react" }),
    newSessionId: () => { const id = randomUUID(); sessions.push(id); return id; } };
  let renderer!: ReactTestRenderer;
  await act(async () => {
    renderer = TestRenderer.create(<StrictMode><InterviewPanel options={options} /></StrictMode>,
      CONCURRENT);
  });
  // StrictMode mounted twice: two clients, the first disposed with its session.
  assert.equal(sessions.length, 2);
  await rendered(renderer, (root) => status(root) === "Waiting for the call…"
    && text(root).includes("Settings saved; they apply when the call connects."), "waiting + queued");
  await relay.waitForHealth((h) => h.sessions === 1 && h.connections.frontend === 1, "one session");
  // trackActivity() listens on document, installUnloadBeacon() and "online" on window.
  assert.equal(doc.listeners, 5);
  assert.equal(win.listeners, 3);

  const call = await SimCall.connect(relay);
  call.start(sessions[1]!);
  await rendered(renderer, (root) => status(root) === "Interview in progress"
    && text(root).includes("The interviewer has your settings.")
    && root.findAll((n) => n.type === "li" && n.props["data-role"] === "assistant").length > 0, "in call");

  // The 8-minute warning (1.5 s here): countdown, then "Continue" clears it.
  await rendered(renderer, (root) => root.findAll((n) => n.props.role === "alert").length === 1, "warning", t(6_000));
  assert.match(text(renderer.root.findByProps({ role: "alert" })), /This interview ends in \d+ s\./);
  await act(async () => { button(renderer.root, "Continue").props.onClick(); });
  await rendered(renderer, (root) => root.findAll((n) => n.props.role === "alert").length === 0, "warning cleared");

  // "End interview" shows "Disconnecting…" until relay confirms.
  act(() => { button(renderer.root, "End interview").props.onClick(); });
  assert.equal(status(renderer.root), "Disconnecting…");
  await rendered(renderer, (root) => status(root) === "Interview ended" && hasButton(root, "Practice again"), "ended");
  await relay.waitForHealth((h) => h.connections.call === 0, "call ended");

  // "Practice again": a new session, an empty transcript.
  act(() => { button(renderer.root, "Practice again").props.onClick(); });
  assert.equal(sessions.length, 3);
  assert.equal(renderer.root.findAllByType("li").length, 0);
  await rendered(renderer, (root) => status(root) === "Waiting for the call…", "new session waiting");

  act(() => { renderer.unmount(); });
  await relay.waitIdle();
  assert.deepEqual([doc.listeners, win.listeners], [0, 0], "unmount removed every listener");
});

test("InterviewPanel shows \"Connection lost\" with Try again when relay refuses", async () => {
  const options = { ...interviewOptions({ role: "Chef" }, { userId: "u-refused" }), newSessionId: () => "not a valid id" };
  let renderer!: ReactTestRenderer;
  await act(async () => {
    renderer = TestRenderer.create(<InterviewPanel options={options} />, CONCURRENT);
  });
  await rendered(renderer, (root) => status(root) === "Connection lost." && hasButton(root, "Try again"), "lost");
  act(() => { renderer.unmount(); });
});

test("useStopAllOnLoad ends the user's lingering session when the app loads", async () => {
  const lingering = new RelayClient(interviewOptions({ role: "Chef" }, { userId: "u-lingering" }));
  lingering.connect();
  await waitForState(lingering, "waiting-for-call");
  function App() {
    useStopAllOnLoad({ userId: "u-lingering" });
    return null;
  }
  let renderer!: ReactTestRenderer;
  await act(async () => { renderer = TestRenderer.create(<App />, CONCURRENT); });
  assert.equal((await waitForState(lingering, "ended")).endReason, "stopped");
  act(() => { renderer.unmount(); });
  lingering.dispose();
  await relay.waitIdle();
});
