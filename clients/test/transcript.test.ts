/** The transcript as pure functions of the model's events: no socket, no relay. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { RelayMessage } from "../src/protocol.js";
import { applyModelEvent, visibleLines, type Lines } from "../src/transcript.js";

/** Apply `events` in order from an empty transcript. */
function build(...events: RelayMessage[]): Lines {
  return events.reduce<Lines>((lines, event) => applyModelEvent(lines, event).lines, []);
}

const added = (id: string, role: string, type = "message"): RelayMessage =>
  ({ type: "conversation.item.added", item: { id, type, role } });
const userDone = (id: string, transcript: string): RelayMessage =>
  ({ type: "conversation.item.input_audio_transcription.completed", item_id: id, transcript });
const assistantDelta = (id: string, delta: string): RelayMessage =>
  ({ type: "response.output_audio_transcript.delta", item_id: id, delta });
const assistantDone = (id: string, transcript: string): RelayMessage =>
  ({ type: "response.output_audio_transcript.done", item_id: id, transcript });

test("a caller's line keeps its place when its transcription completes after the answer began", () => {
  const lines = build(added("u1", "user"), added("a1", "assistant"), assistantDelta("a1", "Hello"),
    userDone("u1", "Hi there"), assistantDone("a1", "Hello, welcome."));
  assert.deepEqual(lines.map((l) => [l.id, l.role, l.text, l.final]),
    [["u1", "user", "Hi there", true], ["a1", "assistant", "Hello, welcome.", true]]);
});

test("deltas append, the final text replaces them, and a line once final stays final", () => {
  let lines = build(assistantDelta("a1", "Hel"), assistantDelta("a1", "lo"));
  assert.deepEqual(lines.map((l) => [l.text, l.final]), [["Hello", false]]);
  lines = applyModelEvent(lines, assistantDone("a1", "Hello!")).lines;
  assert.deepEqual(lines.map((l) => [l.text, l.final]), [["Hello!", true]]);
  lines = applyModelEvent(lines, assistantDelta("a1", " again")).lines;
  assert.deepEqual(lines.map((l) => [l.text, l.final]), [["Hello! again", true]]);
});

test("reserved lines without text are kept but not shown", () => {
  const lines = build(added("u1", "user"), added("a1", "assistant"), assistantDelta("a1", "Hi"));
  assert.equal(lines.length, 2);
  assert.deepEqual(visibleLines(lines).map((l) => l.id), ["a1"]);
});

test("an event that changes nothing returns the same lines and no changed line", () => {
  const lines = build(assistantDone("a1", "Hello"));
  for (const event of [assistantDone("a1", "Hello"), added("a1", "assistant"), { type: "response.done" },
    { type: "session.updated", session: {} }, assistantDelta("a1", 42 as unknown as string),
    { type: "response.output_audio_transcript.delta", delta: "no item id" }]) {
    const update = applyModelEvent(lines, event);
    assert.equal(update.lines, lines, event.type);
    assert.equal(update.changed, null, event.type);
  }
});

test("only conversation messages from the user or the assistant reserve a line", () => {
  const lines = build(added("f1", "assistant", "function_call"), added("s1", "system"), added("u1", "user"));
  assert.deepEqual(lines.map((l) => l.id), ["u1"]);
});

test("the text dialect and the beta audio dialect build lines too", () => {
  const lines = build(
    { type: "response.output_text.delta", item_id: "t1", delta: "typed" },
    { type: "response.output_text.done", item_id: "t1", text: "typed answer" },
    { type: "response.audio_transcript.delta", item_id: "b1", delta: "be" },
    { type: "response.audio_transcript.done", item_id: "b1", transcript: "beta" },
    { type: "conversation.item.input_audio_transcription.delta", item_id: "u1", delta: "um" },
  );
  assert.deepEqual(lines.map((l) => [l.id, l.role, l.text, l.final]), [
    ["t1", "assistant", "typed answer", true], ["b1", "assistant", "beta", true], ["u1", "user", "um", false],
  ]);
});

test("applying an event never mutates the lines it was given; the changed line is frozen", () => {
  const before = build(assistantDelta("a1", "Hel"));
  const copy = JSON.stringify(before);
  const { lines, changed } = applyModelEvent(before, assistantDelta("a1", "lo"));
  assert.equal(JSON.stringify(before), copy);
  assert.notEqual(lines, before);
  assert.equal(changed, lines[0]);
  assert.ok(Object.isFrozen(changed));
});
