#!/usr/bin/env node
// The minimal Node relay: the thinnest Twilio <-> OpenAI Realtime relay, a baseline of
// scripts/bench.py beside scripts/baseline_relay.py (the same relay in Python).
//
//   OPENAI_API_KEY=... node relay.js [--port 8082] [--upstream-url ws://...] [--mark-every-ms 0]
//
// What it does, and nothing more: on /call it waits for Twilio's `start`, opens one upstream
// WebSocket to --upstream-url (default $OPENAI_REALTIME_URL), forwards each `media` payload as
// `input_audio_buffer.append` and each `response.output_audio.delta` back as a Twilio `media`
// message with the call's streamSid. With --mark-every-ms it also sends a Twilio `mark` after
// every that many milliseconds of audio and reads the echoes; by default it sends none. No
// session logic, no per-frame logging, no frontends, no timers. Written the way a careful
// minimal relay is written with `ws` (its one dependency, pinned in package-lock.json):
// JSON.parse/JSON.stringify, no compression, and what the caller sends before the model
// answers is queued, not lost. A TLS model leg is trusted through NODE_EXTRA_CA_CERTS.
'use strict';

const { parseArgs } = require('node:util');
const { WebSocket, WebSocketServer } = require('ws');

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: process.env.PORT || '8082' },
    'upstream-url': {
      type: 'string',
      default: process.env.OPENAI_REALTIME_URL || 'wss://api.openai.com/v1/realtime?model=gpt-realtime',
    },
    'mark-every-ms': { type: 'string', default: '0' },
  },
});
const apiKey = process.env.OPENAI_API_KEY || '';
const markBytes = Number(args['mark-every-ms']) * 8; // G.711 μ-law at 8 kHz

function relayCall(call) {
  let upstream = null;
  let streamSid = null;
  let queued = [];
  let unmarked = 0;
  let marks = 0;

  const end = () => {
    if (upstream !== null) upstream.close();
    call.close();
  };

  function openUpstream() {
    const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
    upstream = new WebSocket(args['upstream-url'], { headers, perMessageDeflate: false });
    upstream.on('open', () => {
      for (const text of queued) upstream.send(text);
      queued = null;
    });
    upstream.on('message', (data) => {
      const event = JSON.parse(data);
      if (event.type !== 'response.output_audio.delta') return;
      call.send(JSON.stringify({ event: 'media', streamSid, media: { payload: event.delta } }));
      if (markBytes) {
        unmarked += (event.delta.length * 3) >> 2;
        if (unmarked >= markBytes) {
          unmarked = 0;
          marks += 1;
          call.send(JSON.stringify({ event: 'mark', streamSid, mark: { name: `m${marks}` } }));
        }
      }
    });
    upstream.on('close', () => call.close());
    upstream.on('error', () => call.terminate());
  }

  call.on('message', (data) => {
    const msg = JSON.parse(data);
    if (msg.event === 'media') {
      if (upstream === null) return;
      const text = JSON.stringify({ type: 'input_audio_buffer.append', audio: msg.media.payload });
      if (queued === null) upstream.send(text);
      else queued.push(text);
    } else if (msg.event === 'start' && upstream === null) {
      streamSid = msg.start.streamSid;
      openUpstream();
    } else if (msg.event === 'stop') {
      end();
    }
    // `mark`: the audio before it has played; a minimal relay has no use for it.
  });
  call.on('close', () => {
    if (upstream !== null) upstream.close();
  });
  call.on('error', () => call.terminate());
}

const server = new WebSocketServer({
  host: args.host,
  port: Number(args.port),
  perMessageDeflate: false,
  maxPayload: 64 * 1024,
});
server.on('connection', (call, request) => {
  if (!request.url.startsWith('/call')) {
    call.close(1008, 'use /call');
    return;
  }
  relayCall(call);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
