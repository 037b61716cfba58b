/**
 * A tiny fake of Twilio's REST API for relay's outbound calls, and Twilio's side of them:
 *
 *     POST /2010-04-01/Accounts/{AccountSid}/Calls.json          place a call → 201 {sid, status: "queued"}
 *     POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json  relay hangs up or cancels → 200
 *
 * Every request's form is kept, repeated fields included. `refuseNext()` answers the next
 * placement with a Twilio error (`{code, message, status}`). A test then plays the call's life
 * as Twilio would: `status()` POSTs a status callback (CallSid, CallStatus, SequenceNumber
 * counting up) and `amd()` the answering-machine verdict to the URLs relay asked for — with
 * PUBLIC_URL unset relay derives them from the request's Host, so they point at relay itself.
 * The relay under test runs with RELAY_TWILIO_SIGNATURES=off, so callbacks carry no signature.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { until, WAIT } from "./support.js";

/** One call relay asked for, with the form it sent. */
export interface PlacedCall {
  readonly sid: string;
  readonly form: URLSearchParams;
  /** Status callbacks played so far (the next SequenceNumber). */
  sequence: number;
}

export class FakeTwilio {
  readonly accountSid = `AC${randomBytes(16).toString("hex")}`;
  readonly authToken = randomBytes(16).toString("hex");
  readonly placed: PlacedCall[] = [];
  /** Updates relay made to a call (hang-up: Status=completed, cancel: Status=canceled). */
  readonly updates: Array<{ sid: string; form: URLSearchParams }> = [];
  private readonly refusals: Array<{ status: number; body: object }> = [];
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly server: Server, readonly baseUrl: string) {}

  static async start(): Promise<FakeTwilio> {
    let fake: FakeTwilio | undefined;
    const server = createServer((req, res) => { void fake!.handle(req, res); });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    fake = new FakeTwilio(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return fake;
  }

  /** What the relay under test needs to place calls through this fake. */
  env(from = "+15557654321"): Record<string, string> {
    return { TWILIO_ACCOUNT_SID: this.accountSid, TWILIO_AUTH_TOKEN: this.authToken,
      TWILIO_API_BASE_URL: this.baseUrl, TWILIO_FROM_NUMBER: from, RELAY_TWILIO_SIGNATURES: "off", PUBLIC_URL: "" };
  }

  /** Answer the next placement as Twilio refuses one, e.g. 400 with code 21211. */
  refuseNext(status: number, code: number, message: string): void {
    this.refusals.push({ status, body: { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`,
      status } });
  }

  /** The `count`-th call relay placed (1-based), once it has. */
  async waitForCall(count = 1, timeoutMs = WAIT): Promise<PlacedCall> {
    await until(() => this.placed.length >= count,
      (wake) => { this.waiters.add(wake); return () => this.waiters.delete(wake); }, `${count} placed call(s)`, timeoutMs);
    return this.placed[count - 1]!;
  }

  /** Wait until relay has updated `call` (hung it up or cancelled it); its Status. */
  async waitForUpdate(call: PlacedCall, timeoutMs = WAIT): Promise<string | null> {
    const update = () => this.updates.find((u) => u.sid === call.sid);
    await until(() => update() !== undefined,
      (wake) => { this.waiters.add(wake); return () => this.waiters.delete(wake); }, `an update of ${call.sid}`, timeoutMs);
    return update()!.form.get("Status");
  }

  /** Twilio's status callback for `call` (`ringing`, `in-progress`, `no-answer`, `busy`, …);
   * relay's HTTP status. */
  status(call: PlacedCall, status: string, extra: Record<string, string> = {}): Promise<number> {
    const form = { CallSid: call.sid, AccountSid: this.accountSid, CallStatus: status,
      SequenceNumber: String(call.sequence++), Direction: "outbound-api", To: call.form.get("To") ?? "",
      From: call.form.get("From") ?? "", ...extra };
    return post(call.form.get("StatusCallback")!, form);
  }

  /** The asynchronous answering-machine verdict (`human`, `machine_start`, `fax`, …). */
  amd(call: PlacedCall, answeredBy: string): Promise<number> {
    const url = call.form.get("AsyncAmdStatusCallback");
    if (!url) throw new Error("relay asked for no answering-machine detection (RELAY_MACHINE_DETECTION)");
    return post(url, { CallSid: call.sid, AccountSid: this.accountSid, AnsweredBy: answeredBy });
  }

  /** The `<Stream url>` of the call's TwiML: where Twilio would open the call's audio. */
  streamPath(call: PlacedCall): string {
    const url = /<Stream url="([^"]+)"/.exec(call.form.get("Twiml") ?? "")?.[1];
    if (!url) throw new Error(`no <Stream> in the TwiML: ${call.form.get("Twiml")}`);
    return new URL(url.replace(/&amp;/g, "&")).pathname;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = "";
    for await (const chunk of req) raw += String(chunk);
    const form = new URLSearchParams(raw);
    const base = `/2010-04-01/Accounts/${this.accountSid}/Calls`;
    const answer = (status: number, body: object): void => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(body));
      for (const wake of [...this.waiters]) wake();
    };
    if (req.headers.authorization !== `Basic ${Buffer.from(`${this.accountSid}:${this.authToken}`).toString("base64")}`) {
      return answer(401, { code: 20003, message: "Authenticate", status: 401 });
    }
    if (req.method === "POST" && req.url === `${base}.json`) {
      const refusal = this.refusals.shift();
      if (refusal) return answer(refusal.status, refusal.body);
      const sid = `CA${randomBytes(16).toString("hex")}`;
      this.placed.push({ sid, form, sequence: 0 });
      return answer(201, { sid, account_sid: this.accountSid, to: form.get("To"), from: form.get("From"),
        status: "queued", direction: "outbound-api" });
    }
    const update = req.method === "POST" ? new RegExp(`^${base}/(CA[0-9a-f]{32})\\.json$`).exec(req.url ?? "") : null;
    if (update) {
      this.updates.push({ sid: update[1]!, form });
      return answer(200, { sid: update[1], status: form.get("Status") ?? "completed" });
    }
    return answer(404, { code: 20404, message: "The requested resource was not found", status: 404 });
  }
}

/** A form POST, as Twilio sends its callbacks; the HTTP status. */
async function post(url: string, form: Record<string, string>): Promise<number> {
  const response = await fetch(url, { method: "POST", body: new URLSearchParams(form),
    headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  await response.arrayBuffer();
  return response.status;
}
