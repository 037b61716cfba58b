/** A driver for the reducer alone (state.ts): feeds it events, keeps what it returned, and
 * checks that the model's armed timers always match the arm/cancel commands. */
import assert from "node:assert/strict";
import {
  initialModel, settingsFrom, type ClientEvent, type Command, type Model, type TimerName,
} from "../src/model.js";
import type { RelayMessage } from "../src/protocol.js";
import { reduce } from "../src/state.js";
import type { RelayClientOptions } from "../src/types.js";

/** Feeds the reducer and keeps what it returned; checks that the armed timers in the model
 * always match the arm/cancel commands (what the shell's timer map would hold). */
export class Driver {
  model: Model;
  commands: Command[] = [];
  private readonly armed = new Set<TimerName>();

  constructor(options: Partial<RelayClientOptions> = {}, jobConfig: RelayClientOptions["jobConfig"] = { role: "Chef" }) {
    this.model = initialModel(settingsFrom({ baseUrl: "ws://relay", ...options }), "session-1", jobConfig);
  }

  get snap() { return this.model.snapshot; }

  /** The attempt number of the socket the model is on (or last opened). */
  get attempt(): number { return this.model.attempts; }

  feed(event: ClientEvent): Command[] {
    const [model, commands] = reduce(this.model, event);
    this.model = model;
    this.commands = commands;
    if (event.kind === "timer") this.armed.delete(event.timer); // a timer that fired is spent
    for (const command of commands) {
      if (command.kind === "arm") this.armed.add(command.timer);
      if (command.kind === "cancel") this.armed.delete(command.timer);
    }
    assert.deepEqual([...model.timers].sort(), [...this.armed].sort(), "the model's timers match the commands");
    return commands;
  }

  /** The socket of the current attempt is made and opens. */
  opens(): void {
    this.feed({ kind: "socket-created", attempt: this.attempt });
    this.feed({ kind: "socket-opened", attempt: this.attempt });
  }

  /** connect(), then the socket opens. */
  connected(): void {
    this.feed({ kind: "connect" });
    this.opens();
  }

  receive(message: RelayMessage, now = 0): Command[] {
    return this.feed({ kind: "socket-message", attempt: this.attempt, message, now });
  }

  closes(code = 1006, jitter = 1): Command[] {
    return this.feed({ kind: "socket-closed", attempt: this.attempt, code, reason: "", jitter });
  }

  fire(timer: TimerName, now = 0, jitter = 1): Command[] {
    return this.feed({ kind: "timer", timer, now, jitter });
  }

  /** Commands of the last event, minus the emits. */
  get effects(): Command[] { return this.commands.filter((c) => c.kind !== "emit"); }

  /** The `state` events of the last event, in order. */
  get states(): string[] {
    return this.commands.flatMap((c) => (c.kind === "emit" && c.type === "state" ? [c.payload.state] : []));
  }

  get timers(): TimerName[] { return [...this.model.timers]; }
}

export const sent = (commands: Command[]): string[] =>
  commands.flatMap((c) => (c.kind === "send" ? [c.message.type] : []));
