#!/usr/bin/env node
// Serving benchmark (not a test): C concurrent streaming clients against a real `slm serve`,
// each sending a ~200-token chat prompt and generating a fixed number of tokens.
//
//   node benches/bench_serve.mjs -m MODEL.gguf [-t 2] [-c 1,4,8] [--rounds 2] [--gen 128]
//        [--prompt-tokens 200] [--chat-template FILE] [--slm build/release/slm] [--url URL]
//
// Per concurrency C it prints: aggregate generated tokens/s over the whole run; the decode-phase
// aggregate (tokens generated per second while all C requests of a round are generating:
// from the last first-token to the first last-token of the round); time to first token and
// inter-token latency p50/p95. For scale it then runs the same binary's `slm bench` (single
// stream tg and pp512). With --url it measures a server already running (llama-server too)
// instead of starting `slm serve --parallel max(C)`.
import { spawn, execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
function opt(name, def) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
}
const model = opt('-m');
const threads = Number(opt('-t', '2'));
const levels = opt('-c', '1,4,8').split(',').map(Number);
const rounds = Number(opt('--rounds', '2'));
const nGen = Number(opt('--gen', '128'));
const promptTokens = Number(opt('--prompt-tokens', '200'));
const slm = opt('--slm', path.resolve(here, '..', 'build', 'release', 'slm'));
const template = opt('--chat-template', path.resolve(here, '..', '..', 'shared', 'fixtures', 'templates',
                                                        'meta-llama-Llama-3.2-3B-Instruct.jinja'));
let url = opt('--url');
if (!model && !url) {
  console.error('usage: node benches/bench_serve.mjs -m MODEL.gguf [-t 2] [-c 1,4,8] [--rounds 2] [--gen 128]');
  process.exit(2);
}

// A distinct ~N-token user message per request (common English words: about one token each in
// a Llama 3 vocabulary), so that no request reuses another's prompt beyond the template's head.
const words = ('the of and to in is was for on that with as by at from his her they this which had not are but ' +
  'one all were when there can more an their what about so out up into time has been would some them other than ' +
  'then now its only new very after also made over two may first any where most through back much before good')
  .split(' ');
function promptFor(i) {
  let x = (i + 1) * 2654435761 >>> 0;
  const out = [`Request ${i}:`];
  for (let k = 0; k < promptTokens - 40; ++k) {
    x = (x * 1103515245 + 12345) >>> 0;
    out.push(words[x % words.length]);
  }
  return out.join(' ');
}

async function oneRequest(i) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      messages: [{ role: 'user', content: promptFor(i) }],
      max_tokens: nGen, temperature: 0, ignore_eos: true, stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const times = [];  // arrival time of each content chunk, and how many tokens it held
  let usage = null, buf = '', chunks = 0;
  const dec = new TextDecoder();
  for await (const part of res.body) {
    buf += dec.decode(part, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      if (!ev.startsWith('data: ')) continue;
      const data = ev.slice(6);
      if (data === '[DONE]') continue;
      const j = JSON.parse(data);
      if (j.usage) usage = j.usage;
      const c = j.choices?.[0]?.delta?.content;
      if (c) { times.push(performance.now()); ++chunks; }
    }
  }
  const generated = usage ? usage.completion_tokens : chunks;
  return { t0, times, generated, prompt: usage?.prompt_tokens ?? 0 };
}

function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

let server = null;
if (!url) {
  const parallel = Math.max(...levels);
  server = spawn(slm, ['serve', '-m', model, '--port', '0', '-t', String(threads), '--parallel', String(parallel),
                       '--chat-template', template], { stdio: ['ignore', 'ignore', 'pipe'] });
  url = await new Promise((resolve, reject) => {
    let err = '';
    server.stderr.on('data', (d) => {
      err += d;
      const m = err.match(/listening on (http:\/\/\S+)/);
      if (m && /loaded/.test(err)) resolve(m[1]);
    });
    server.on('exit', (c) => reject(new Error(`slm serve exited ${c}: ${err}`)));
  });
}

let reqNo = 0;
let promptTokensSeen = 0;  // prompt tokens of a request, from the server's usage
// Warm-up: page in the weights and repack them before anything is timed.
await oneRequest(reqNo++);

const rows = [];
for (const C of levels) {
  const ttft = [], itl = [];
  let totalTokens = 0, decodeTokens = 0, decodeSeconds = 0;
  const start = performance.now();
  for (let r = 0; r < rounds; ++r) {
    const results = await Promise.all(Array.from({ length: C }, () => oneRequest(reqNo++)));
    for (const x of results) {
      totalTokens += x.generated;
      promptTokensSeen = x.prompt;
      if (x.times.length) ttft.push((x.times[0] - x.t0) / 1000);
      for (let k = 1; k < x.times.length; ++k) itl.push((x.times[k] - x.times[k - 1]) / 1000);
    }
    // Decode phase of this round: every request has its first token and none has finished.
    const from = Math.max(...results.map((x) => x.times[0]));
    const to = Math.min(...results.map((x) => x.times[x.times.length - 1]));
    if (to > from) {
      for (const x of results) decodeTokens += x.times.filter((t) => t > from && t <= to).length;
      decodeSeconds += (to - from) / 1000;
    }
  }
  const wall = (performance.now() - start) / 1000;
  rows.push({
    C, requests: C * rounds, aggregate: totalTokens / wall, decode: decodeSeconds > 0 ? decodeTokens / decodeSeconds : NaN,
    ttft50: pct(ttft, 50), ttft95: pct(ttft, 95), itl50: pct(itl, 50), itl95: pct(itl, 95),
  });
}
if (server) {
  server.kill('SIGTERM');
  await new Promise((r) => server.on('exit', r));
}

console.log(`slm bench-serve: ${model ?? url}, ${threads} threads, ~${promptTokens}-token chat prompts, ${nGen} generated tokens each, ${rounds} rounds per C`);
console.log('| C | requests | aggregate gen t/s | decode-phase t/s | TTFT p50 s | TTFT p95 s | ITL p50 ms | ITL p95 ms |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows)
  console.log(`| ${r.C} | ${r.requests} | ${r.aggregate.toFixed(1)} | ${r.decode.toFixed(1)} | ${r.ttft50.toFixed(2)} | ` +
              `${r.ttft95.toFixed(2)} | ${(r.itl50 * 1000).toFixed(1)} | ${(r.itl95 * 1000).toFixed(1)} |`);

if (model) {
  // The same binary, one stream, for scale, and the two targets computed from it.
  const out = execFileSync(slm, ['bench', '-m', model, '-t', String(threads), '-p', '512', '-n', String(nGen), '-r', '2', '--json'],
                           { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const runs = out.trim().split('\n').map((l) => JSON.parse(l));
  const pp = runs.find((r) => r.test === 'pp512').avg_ts, tg = runs.find((r) => r.test === `tg${nGen}`).avg_ts;
  console.log(`\nslm bench -m ${path.basename(model)} -t ${threads} -p 512 -n ${nGen} -r 2: pp512 ${pp.toFixed(1)} t/s, tg${nGen} ${tg.toFixed(1)} t/s`);
  for (const r of rows) {
    const prefillAll = (r.C * promptTokensSeen) / pp;
    console.log(`C=${r.C}: decode-phase ${(r.decode / tg).toFixed(2)}x tg${nGen}; TTFT p95 ${r.ttft95.toFixed(2)} s = ` +
                `${(r.ttft95 / prefillAll).toFixed(2)}x the ${prefillAll.toFixed(2)} s to prefill ${r.C} x ${promptTokensSeen} prompt tokens at pp512`);
  }
}
