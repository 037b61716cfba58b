/**
 * The socket of the current attempt, for the shell (client.ts): one at a time, made once its
 * token has arrived, every event reported tagged with its attempt number. Closing it stops
 * its events and voids a token still on its way.
 */
import type { ClientEvent } from "./model.js";
import { parseFrame, type RelayMessage } from "./protocol.js";
import type { WebSocketLike } from "./types.js";

const OPEN = 1;

/** Where the socket's events go. */
export interface SocketListener {
  dispatch(event: ClientEvent): void;
  /** Every parsed message, before it is dispatched (the client's `message` event). */
  message(message: RelayMessage): void;
  now(): number;
  random(): number;
}

export class AttemptSocket {
  private current: { readonly attempt: number; ws: WebSocketLike | null } | null = null;

  constructor(private readonly listener: SocketListener) {}

  /** Whether a send goes out now. */
  get isOpen(): boolean {
    return this.current?.ws?.readyState === OPEN;
  }

  /** Attempt `attempt`: wait for `token` (a failure is `token-failed`), then `connect(token)`
   * makes the socket. Replaces any socket still here. */
  async open(attempt: number, token: () => string | undefined | Promise<string | undefined>,
    connect: (token: string | undefined) => WebSocketLike): Promise<void> {
    this.close();
    const current: { readonly attempt: number; ws: WebSocketLike | null } = { attempt, ws: null };
    this.current = current;
    const { listener } = this;
    let resolved: string | undefined;
    try {
      // Awaited even when it is a string: the socket is made after the call (connect(), a
      // timer) that asked for it has returned, never inside it.
      resolved = await token();
    } catch (error) {
      if (this.current === current) listener.dispatch({ kind: "token-failed", attempt, message: String(error) });
      return;
    }
    if (this.current !== current) return; // abandoned while the token was on its way
    const ws = connect(resolved);
    current.ws = ws;
    ws.onopen = () => listener.dispatch({ kind: "socket-opened", attempt });
    ws.onmessage = (event: { data: unknown }) => {
      const message = parseFrame(event.data);
      if (message) listener.message(message);
      listener.dispatch({ kind: "socket-message", attempt, message, now: listener.now() });
    };
    ws.onerror = () => listener.dispatch({ kind: "socket-error", attempt });
    ws.onclose = (event: { code: number; reason: string }) => {
      if (this.current === current) this.forget(); // closed already: just stop listening
      listener.dispatch({ kind: "socket-closed", attempt, code: event.code, reason: event.reason,
        jitter: listener.random() });
    };
    listener.dispatch({ kind: "socket-created", attempt });
  }

  /** Send `message` as JSON if the socket is open (otherwise it is dropped). */
  write(message: object): void {
    if (this.isOpen) this.current!.ws!.send(JSON.stringify(message));
  }

  /** Close the socket and stop listening to it; voids a pending token. Idempotent. */
  close(): void {
    const ws = this.forget();
    if (!ws) return;
    try {
      ws.close(1000);
    } catch {
      // Closing a socket that never opened can throw in some engines; it is gone either way.
    }
  }

  private forget(): WebSocketLike | null {
    const ws = this.current?.ws ?? null;
    this.current = null;
    if (ws) ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    return ws;
  }
}
