/** "Call me" against a real relay placing calls through a fake Twilio API (test/fake-twilio.ts):
 * placeCall, Twilio's progress in the snapshot, every way an unanswered call ends, refusals
 * with relay's code and message, a second call while one rings, the token on the POST, and
 * the documented CallMeButton rendered for real. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import TestRenderer, {
  act, type ReactTestInstance, type ReactTestRenderer, type TestRendererOptions,
} from "react-test-renderer";
import { RelayClient, type RelayClientOptions } from "../relay-client.js";
import { callLabel, CallMeButton } from "../examples/CallMeButton.js";
import { interviewOptions } from "../examples/interview.js";
import { useInterview } from "../examples/useInterview.js";
import { FakeTwilio, type PlacedCall } from "./fake-twilio.js";
import {
  Relay, SECRET, SimCall, WAIT, mintJwt, nextEvent, startRelay, waitForSnapshot, waitForState,
} from "./support.js";

const TO = "+15551234567";

let twilio: FakeTwilio;
let relay: Relay;
before(async () => {
  twilio = await FakeTwilio.start();
  relay = await startRelay({ ...twilio.env(), RELAY_MACHINE_DETECTION: "on" });
  process.env.NEXT_PUBLIC_WEBSOCKET_SERVER_URL = relay.wsUrl;
});
after(async () => {
  await relay.stop();
  await twilio.close();
});

/** A client for `user`, and the call it asked relay to place (placed through the fake). */
async function callFor(user: string): Promise<{ client: RelayClient; call: PlacedCall }> {
  const client = new RelayClient({ ...interviewOptions({ role: "Chef" }, { userId: user }), networkEvents: null });
  const placed = twilio.placed.length;
  const result = await client.placeCall(TO);
  assert.ok(result.ok, JSON.stringify(result));
  const call = await twilio.waitForCall(placed + 1);
  assert.equal(result.callSid, call.sid);
  return { client, call };
}

describe("the call's progress", () => {
  test("ringing → in-progress → connected show in the snapshot; the caller's hang-up ends it", async () => {
    const phases: string[] = [];
    const client = new RelayClient({ ...interviewOptions({ role: "Chef" }, { userId: "u-progress" }),
      networkEvents: null });
    // Every change is told (the SID arriving too); the phases, each once:
    client.on("callProgress", (call) => { if (phases.at(-1) !== call.phase) phases.push(call.phase); });
    const placed = twilio.placed.length;
    // An idle client connects first: the POST goes once the socket that hears the progress is open.
    const placing = client.placeCall(TO);
    assert.deepEqual([client.state, client.getSnapshot().call.phase], ["connecting", "placing"]);
    const result = await placing;
    assert.ok(result.ok);
    assert.deepEqual([result.sessionId, result.status], [client.sessionId, "queued"]);
    const call = await twilio.waitForCall(placed + 1);
    assert.deepEqual([call.form.get("To"), call.form.get("From")], [TO, "+15557654321"]);
    assert.equal(call.form.get("StatusCallback"),
      `${relay.httpUrl}/api/calls/status?sessionId=${client.sessionId}`, "relay's own address (PUBLIC_URL unset)");
    await waitForSnapshot(client, (s) => s.call.phase === "queued" && s.call.callSid === call.sid, "queued");

    assert.equal(await twilio.status(call, "initiated"), 204);
    assert.equal(await twilio.status(call, "ringing"), 204);
    await waitForSnapshot(client, (s) => s.call.phase === "ringing", "ringing");
    await twilio.status(call, "in-progress");
    const answered = await waitForSnapshot(client, (s) => s.call.phase === "in-progress", "in-progress");
    assert.equal(answered.state, "waiting-for-call", "picked up, not streaming yet");

    // Twilio opens the stream the TwiML names, for this call.
    const stream = await SimCall.connect(relay, twilio.streamPath(call), call.sid);
    stream.start(client.sessionId);
    const live = await waitForSnapshot(client, (s) => s.call.phase === "connected" && s.state === "in-call", "connected");
    assert.equal(live.callSid, call.sid);
    stream.hangUp();
    const ended = await waitForState(client, "ended");
    assert.deepEqual([ended.call.phase, ended.call.endReason], ["ended", "caller_hung_up"]);
    assert.deepEqual(phases, ["placing", "queued", "initiated", "ringing", "in-progress", "connected", "ended"]);
    client.dispose();
    await relay.waitIdle();
  });
});

describe("calls nobody takes", () => {
  for (const [status, reason] of [["no-answer", "no_answer"], ["busy", "busy"]] as const) {
    test(`Twilio's ${status} ends the call and the interview with ${reason}`, async () => {
      const { client, call } = await callFor(`u-${reason}`);
      await twilio.status(call, "ringing");
      await waitForSnapshot(client, (s) => s.call.phase === "ringing", "ringing");
      await twilio.status(call, status);
      const ended = await waitForState(client, "ended");
      assert.deepEqual([ended.endReason, ended.call.phase, ended.call.endReason], [reason, "ended", reason]);
      assert.equal(callLabel(ended.call), reason === "busy" ? "Your line was busy. Call again in a moment."
        : "No answer. Call again when you can pick up.");
      const again = await client.placeCall(TO);
      assert.deepEqual(again.ok ? null : [again.error.code, again.error.status], ["session_ended", null],
        "the ended session places no call; practiceAgain() starts one that can");
      client.dispose();
      await relay.waitIdle();
    });
  }

  test("an answering machine ends it with voicemail", async () => {
    const { client, call } = await callFor("u-voicemail");
    assert.equal(call.form.get("MachineDetection"), "Enable");
    await twilio.status(call, "in-progress");
    await waitForSnapshot(client, (s) => s.call.phase === "in-progress", "answered");
    assert.equal(await twilio.amd(call, "machine_start"), 204);
    const ended = await waitForState(client, "ended");
    assert.deepEqual([ended.call.phase, ended.call.endReason], ["ended", "voicemail"]);
    client.dispose();
    await relay.waitIdle();
  });
});

describe("refusals", () => {
  test("an invalid number is refused with relay's code and message, by relay or by Twilio", async () => {
    const client = new RelayClient({ ...interviewOptions({ role: "Chef" }, { userId: "u-invalid" }), networkEvents: null });
    const placed = twilio.placed.length;
    const local = await client.placeCall("555-1234");
    assert.deepEqual(local, { ok: false, error: { code: "invalid_number", status: 400,
      message: "give the number in E.164 form, e.g. +15551234567" } });
    assert.deepEqual(client.getSnapshot().call, { phase: "refused", to: "555-1234", callSid: null, endReason: null,
      error: local.ok ? null : local.error });
    assert.equal(callLabel(client.getSnapshot().call), "give the number in E.164 form, e.g. +15551234567");

    // A number in E.164 form Twilio will not call: relay passes on what to fix.
    twilio.refuseNext(400, 21211, "Invalid 'To' Phone Number: +1555000000");
    const remote = await client.placeCall("+1555000000");
    assert.deepEqual(remote, { ok: false, error: { code: "invalid_number", status: 400,
      message: "That phone number is not valid: give it in E.164 form, e.g. +15551234567." } });
    assert.equal(client.getSnapshot().call.phase, "refused");
    assert.equal(twilio.placed.length, placed, "no call was placed");
    assert.equal(client.getSnapshot().state, "waiting-for-call", "a refused call does not end the interview");
    client.dispose();
    await relay.waitIdle();
  });

  test("a second placeCall while the call rings gets relay's 409; ending the session cancels the call", async () => {
    const { client, call } = await callFor("u-second");
    await twilio.status(call, "ringing");
    const ringing = await waitForSnapshot(client, (s) => s.call.phase === "ringing", "ringing");
    const second = await client.placeCall("+15557654321");
    assert.deepEqual(second, { ok: false, error: { code: "call_in_progress", status: 409,
      message: "this session already has a call" } });
    assert.equal(client.getSnapshot().call, ringing.call, "the ringing call keeps its progress");

    const ended = nextEvent(client, "callProgress", (c) => c.phase === "ended");
    await client.endSession();
    assert.equal((await ended).endReason, "frontend_ended");
    assert.equal(await twilio.waitForUpdate(call), "canceled", "relay cancelled the ringing call at Twilio");
    client.dispose();
    await relay.waitIdle();
  });
});

describe("with auth on", () => {
  let authRelay: Relay;
  before(async () => { authRelay = await startRelay({ ...twilio.env(), RELAY_AUTH_SECRET: SECRET }); });
  after(async () => { await authRelay.stop(); });

  test("the POST carries the token source's token as Bearer; relay places the call for that user", async () => {
    const posted: Array<Record<string, string>> = [];
    const client = new RelayClient({ baseUrl: authRelay.wsUrl, jobConfig: { role: "Chef" }, networkEvents: null,
      token: (sessionId) => mintJwt({ sub: "carol", sid: sessionId }),
      fetch: (url, init) => { posted.push(init?.headers ?? {}); return fetch(url, init); } });
    const placed = twilio.placed.length;
    const result = await client.placeCall(TO);
    assert.ok(result.ok, JSON.stringify(result));
    assert.match(posted[0]!.Authorization ?? "", /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
    const call = await twilio.waitForCall(placed + 1);
    await twilio.status(call, "ringing");
    await waitForSnapshot(client, (s) => s.call.phase === "ringing", "ringing");
    // Another user cannot ask for this session's call: relay refuses their socket, so no POST goes.
    const mallory = new RelayClient({ baseUrl: authRelay.wsUrl, sessionId: client.sessionId, networkEvents: null,
      token: mintJwt({ sub: "mallory" }) });
    const refused = await mallory.placeCall(TO);
    assert.deepEqual([refused.ok || refused.error.code, mallory.getSnapshot().lastError?.kind], ["not_connected", "refused"]);
    assert.equal(twilio.placed.length, placed + 1);
    mallory.dispose();
    client.dispose();
    await authRelay.waitIdle();
  });
});

// -- the documented button ----------------------------------------------------------------------

const CONCURRENT = { unstable_isConcurrent: true } as unknown as TestRendererOptions;

function text(node: ReactTestInstance | string): string {
  return typeof node === "string" ? node : node.children.map(text).join("");
}

async function rendered(renderer: ReactTestRenderer, check: (root: ReactTestInstance) => boolean,
  what: string, timeoutMs = WAIT): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check(renderer.root)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${text(renderer.root)}`);
    await act(() => new Promise<void>((resolve) => setTimeout(resolve, 20)));
  }
}

const status = (root: ReactTestInstance): string => text(root.findByProps({ role: "status" }));
const button = (root: ReactTestInstance, label: string): ReactTestInstance =>
  root.find((n) => n.type === "button" && text(n) === label);

function CallMePage({ options }: { options: RelayClientOptions }) {
  const { client, snapshot } = useInterview(options);
  if (!client || !snapshot) return <p role="status">Connecting…</p>;
  return <CallMeButton client={client} snapshot={snapshot} />;
}

test("CallMeButton: a refusal's message, ringing, no answer, then calling again in a new session", async () => {
  Object.assign(globalThis, { IS_REACT_ACT_ENVIRONMENT: true, IS_REACT_NATIVE_TEST_ENVIRONMENT: true });
  const options = { ...interviewOptions({ role: "Chef" }, { userId: "u-button" }), networkEvents: null };
  let renderer!: ReactTestRenderer;
  await act(async () => { renderer = TestRenderer.create(<CallMePage options={options} />, CONCURRENT); });
  const type = (value: string) => act(() => {
    renderer.root.findByType("input").props.onChange({ target: { value } });
  });
  const submit = () => act(() => { renderer.root.findByType("form").props.onSubmit({ preventDefault() {} }); });

  await type("555 1234");
  await submit();
  await rendered(renderer, (root) => status(root) === "give the number in E.164 form, e.g. +15551234567", "refused");

  const placed = twilio.placed.length;
  await type(TO);
  await submit();
  const call = await twilio.waitForCall(placed + 1);
  await rendered(renderer, (root) => status(root) === `Calling ${TO}…` && button(root, "Calling…").props.disabled,
    "calling");
  await twilio.status(call, "ringing");
  await rendered(renderer, (root) => status(root) === "Ringing: pick up your phone.", "ringing");
  await twilio.status(call, "no-answer");
  await rendered(renderer, (root) => status(root) === "No answer. Call again when you can pick up.", "no answer");

  // Calling again is a new session: practiceAgain(), then the call once its socket is open.
  assert.equal(button(renderer.root, "Call me again").props.disabled, false);
  await submit();
  const again = await twilio.waitForCall(placed + 2);
  assert.notEqual(new URL(again.form.get("StatusCallback")!).searchParams.get("sessionId"),
    new URL(call.form.get("StatusCallback")!).searchParams.get("sessionId"));
  await rendered(renderer, (root) => status(root) === `Calling ${TO}…`, "calling again");
  await act(async () => { button(renderer.root, "Hang up").props.onClick(); });
  await rendered(renderer, (root) => status(root) === "The call has ended.", "hung up");
  act(() => { renderer.unmount(); });
  await relay.waitIdle();
});
