/**
 * The live transcript, built from the model events relay forwards (docs/protocol.md "Model
 * events"): pure functions from the lines so far and one event to the lines after it.
 *
 * A line is keyed by the model's item ID. `conversation.item.added` reserves its place before
 * any text, because the caller's transcription often completes after the answer has begun;
 * `…delta` events append; `…done`/`…completed` replace the text with the final one.
 */
import type { RelayMessage } from "./protocol.js";
import type { TranscriptItem } from "./types.js";

type Role = TranscriptItem["role"];

const DELTA: Readonly<Record<string, Role>> = {
  "conversation.item.input_audio_transcription.delta": "user",
  "response.output_audio_transcript.delta": "assistant",
  "response.output_text.delta": "assistant",
  "response.audio_transcript.delta": "assistant", // beta dialect
};
const DONE: Readonly<Record<string, Role>> = {
  "conversation.item.input_audio_transcription.completed": "user",
  "response.output_audio_transcript.done": "assistant",
  "response.output_text.done": "assistant",
  "response.audio_transcript.done": "assistant", // beta dialect
};

/** Every line so far in conversation order, including reserved ones that have no text yet. */
export type Lines = readonly TranscriptItem[];

/** What a model event did to the transcript: the new lines, and the line it changed (null
 * when it changed nothing, e.g. an event that is not about the transcript). */
export interface TranscriptUpdate {
  readonly lines: Lines;
  readonly changed: TranscriptItem | null;
}

/** `lines` after the model event `message`. */
export function applyModelEvent(lines: Lines, message: RelayMessage): TranscriptUpdate {
  const { type } = message;
  if (type === "conversation.item.added" || type === "conversation.item.created") {
    const item = message.item as { id?: unknown; type?: unknown; role?: unknown } | undefined;
    if (item?.type === "message" && typeof item.id === "string"
        && (item.role === "user" || item.role === "assistant")) {
      return upsert(lines, item.id, item.role, (old) => old, false);
    }
    return { lines, changed: null };
  }
  const itemId = typeof message.item_id === "string" ? message.item_id : null;
  const deltaRole = DELTA[type];
  if (deltaRole && itemId && typeof message.delta === "string") {
    const delta = message.delta;
    return upsert(lines, itemId, deltaRole, (old) => old + delta, false);
  }
  const doneRole = DONE[type];
  if (doneRole && itemId) {
    const text = typeof message.transcript === "string" ? message.transcript : message.text;
    if (typeof text === "string") return upsert(lines, itemId, doneRole, () => text, true);
  }
  return { lines, changed: null };
}

/** What the UI shows: the lines that have text. */
export function visibleLines(lines: Lines): readonly TranscriptItem[] {
  return lines.filter((line) => line.text !== "");
}

/** Add or replace the line `id`; a line once final stays final. */
function upsert(lines: Lines, id: string, role: Role, text: (old: string) => string,
  final: boolean): TranscriptUpdate {
  const index = lines.findIndex((line) => line.id === id);
  const old = index >= 0 ? lines[index] : undefined;
  const line: TranscriptItem = Object.freeze({ id, role, text: text(old?.text ?? ""),
    final: final || (old?.final ?? false) });
  if (old && old.text === line.text && old.final === line.final) return { lines, changed: null };
  const next = old ? lines.map((each, i) => (i === index ? line : each)) : [...lines, line];
  return { lines: next, changed: line };
}
