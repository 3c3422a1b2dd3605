// Starts a real `slm serve` on a free loopback port for the Node tests and stops it after.
//
//   const srv = await startServer({ model: sharedPath('models/stories260K.gguf'),
//                                   args: ['--chat-template', dataPath('stories260K-chat.jinja')] });
//   ... fetch(`${srv.url}/v1/models`) ...
//   assert.deepEqual(await srv.stop(), { code: 0, signal: null });
//
// The server is started with --port 0; it prints "slm: listening on http://HOST:PORT" on stderr
// once it accepts connections. SLM_CLI_PATH names the binary (ctest sets it; the ASan build's
// binary can be named the same way), SLM_SHARED the team's reference data.
//
// npm packages (openai, playwright-core) are not installed next to these files: ctest installs
// them with `npm ci` into <build>/server-tests/node_modules (tests/server/CMakeLists.txt) and
// names that folder in SLM_NODE_MODULES (and NODE_PATH). ESM `import` ignores NODE_PATH, so
// load them with `await importDep('openai')`, which looks in SLM_NODE_MODULES, NODE_PATH,
// build/release/server-tests/node_modules and tests/server/node_modules, in that order.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const sourceDir = path.resolve(here, '..', '..');
export const cliPath = process.env.SLM_CLI_PATH || path.join(sourceDir, 'build', 'release', 'slm');
export const sharedDir = process.env.SLM_SHARED || path.resolve(sourceDir, '..', 'shared');

export function sharedPath(rel) { return path.join(sharedDir, rel); }
export function dataPath(rel) { return path.join(sourceDir, 'tests', 'data', rel); }

// Skips (loudly) when a reference file is missing, except under CI=true where that is a failure.
export function requireShared(t, rel) {
  const p = sharedPath(rel);
  if (fs.existsSync(p)) return true;
  const msg = `SKIPPING: ${p} is missing (set SLM_SHARED to the team's shared folder)`;
  if (process.env.CI === 'true') throw new Error(`${msg}; CI=true makes a missing fixture a failure`);
  console.error(msg);
  t.skip(msg);
  return false;
}

// For describe()/test() options: false when every file is there, else the reason to skip
// (printed loudly); under CI=true a missing file throws instead.
//   describe('stories260K', { skip: missingShared(MODEL) }, () => { ... });
export function missingShared(...rels) {
  const missing = rels.map(sharedPath).filter((p) => !fs.existsSync(p));
  if (missing.length === 0) return false;
  const msg = `SKIPPING: ${missing.join(', ')} missing (set SLM_SHARED to the team's shared folder)`;
  if (process.env.CI === 'true') throw new Error(`${msg}; CI=true makes a missing fixture a failure`);
  console.error(msg);
  return msg;
}

// ---------------------------------------------------------------------------------------------
// npm packages

export const nodeModulesDirs = [
  process.env.SLM_NODE_MODULES,
  ...(process.env.NODE_PATH || '').split(path.delimiter),
  path.join(sourceDir, 'build', 'release', 'server-tests', 'node_modules'),
  path.join(here, 'node_modules'),
].filter((d) => d && fs.existsSync(d));

function resolveDep(name) {
  for (const dir of nodeModulesDirs) {
    const req = createRequire(path.join(dir, '..', 'resolver.cjs'));
    try { return { req, resolved: req.resolve(name) }; } catch { /* next folder */ }
  }
  throw new Error(`npm package '${name}' not found in ${JSON.stringify(nodeModulesDirs)}: run ` +
                  `ctest -R server.npm_install (or npm ci in a folder named by SLM_NODE_MODULES)`);
}

// The module `name` (CommonJS entry of dual packages) from the first folder that has it.
export async function importDep(name) {
  return import(pathToFileURL(resolveDep(name).resolved).href);
}

// The same with require() (synchronous); requireServerTestModule is its other name.
export function requireDep(name) {
  const { req, resolved } = resolveDep(name);
  return req(resolved);
}
export const requireServerTestModule = requireDep;

// An OpenAI client for a started server: no retries (a failure must show), keep-alive
// connections as real clients use them (closed by srv.stop() before it signals the server).
export async function openaiClient(srv, opts = {}) {
  const mod = await importDep('openai');
  const OpenAI = mod.OpenAI ?? mod.default;
  const httpAgent = new http.Agent({ keepAlive: true });
  srv.agents.push(httpAgent);
  return new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'sk-no-key-needed', maxRetries: 0, timeout: 120000, httpAgent, ...opts });
}

// ---------------------------------------------------------------------------------------------
// Servers

const running = new Set();
process.on('exit', () => { for (const p of running) { try { p.kill('SIGKILL'); } catch { /* gone */ } } });

// Threads per server unless args name -t: 1 by default (SLM_SERVER_THREADS), as the test
// models are tiny and the test machines small and shared: a second thread that the kernel
// parks makes every step wait for it.
const defaultThreads = process.env.SLM_SERVER_THREADS || '1';

// waitHealthy: false returns as soon as the server listens (its model may still be loading).
export async function startServer({ model, args = [], env = {}, timeoutMs = 60000, waitHealthy = true } = {}) {
  const threads = args.some((a) => a === '-t' || a === '--threads') ? [] : ['-t', defaultThreads];
  const argv = ['serve', '-m', model, '--host', '127.0.0.1', '--port', '0', ...threads, ...args];
  const proc = spawn(cliPath, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  let stderr = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => { running.delete(proc); resolve({ code, signal }); }));
  proc.on('error', () => {});  // spawn failures show as an exit
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`slm serve did not start in ${timeoutMs} ms:\n${stderr}`)), timeoutMs);
    proc.stderr.on('data', (d) => {
      stderr += d.toString();
      if (process.env.SLM_SERVER_LOG) process.stderr.write(d);
      const m = stderr.match(/listening on (http:\/\/[^\s]+)/);
      if (m) { clearTimeout(timer); resolve(m[1].replace(/\/+$/, '')); }
    });
    proc.stdout.on('data', () => {});
    exited.then(({ code, signal }) => { clearTimeout(timer); reject(new Error(`${cliPath} ${argv.join(' ')} exited (${code ?? signal}) before listening:\n${stderr}`)); });
  });
  // /health is 503 while the model loads, 200 once requests are served.
  for (let i = 0; waitHealthy; ++i) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`slm serve exited while loading:\n${stderr}`);
    const r = await fetch(`${url}/health`, { headers: { connection: 'close' } }).catch(() => null);
    if (r) await r.arrayBuffer().catch(() => {});
    if (r && r.status === 200) break;
    if (i * 50 > timeoutMs) throw new Error(`slm serve at ${url} never became healthy:\n${stderr}`);
    await sleep(50);
  }
  const { port } = new URL(url);
  return {
    url,
    host: '127.0.0.1',
    port: Number(port),
    proc,
    argv,
    agents: [],  // keep-alive agents of openai clients, closed by stop()
    get stderr() { return stderr; },
    // Resident memory of the server process in KiB (Linux /proc).
    rssKiB() {
      const status = fs.readFileSync(`/proc/${proc.pid}/status`, 'utf8');
      return Number(status.match(/VmRSS:\s+(\d+)/)[1]);
    },
    // Whether the binary runs under AddressSanitizer (its RSS says little about leaks then).
    isAsan() {
      try { return /libasan|libclang_rt\.asan/.test(fs.readFileSync(`/proc/${proc.pid}/maps`, 'utf8')); } catch { return false; }
    },
    // Sends `signal` and waits for the exit; { code, signal } (code 0 expected).
    // Idle keep-alive connections of the openai clients are closed first: the server may wait
    // for them up to its keep-alive timeout before exiting.
    async stop(sig = 'SIGTERM', graceMs = 10000) {
      for (const a of this.agents.splice(0)) a.destroy();
      const t0 = Date.now();
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill(sig);
        const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      const r = await exited;
      if (Date.now() - t0 > 1000) console.error(`slm serve took ${Date.now() - t0} ms to exit after ${sig}`);
      if (r.code !== 0) console.error(`slm serve (${argv.join(' ')}) exited with ${JSON.stringify(r)}; its stderr ended:\n${stderr.slice(-4000)}`);
      return r;
    },
    exited,
  };
}

export function sleep(ms) { return new Promise((res) => setTimeout(res, ms)); }

// `promise`, or `onTimeout` once `ms` passed (the timer is cleared either way, so that it does
// not keep the process alive).
export async function within(promise, ms, onTimeout = 'timeout') {
  let timer;
  const t = new Promise((res) => { timer = setTimeout(() => res(onTimeout), ms); });
  try { return await Promise.race([promise, t]); } finally { clearTimeout(timer); }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers that do not go through the openai package

// The helpers below send 'Connection: close' so that no idle connection delays a server's exit.

// GET: { status, headers, text, json }.
export async function httpGet(srv, route, { headers = {} } = {}) {
  const r = await fetch(`${srv.url}${route}`, { headers: { connection: 'close', ...headers } });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}

// POST `body` (an object, sent as JSON) and return { status, headers, text, json }.
export async function postJson(srv, route, body, { headers = {}, signal } = {}) {
  const r = await fetch(`${srv.url}${route}`, {
    method: 'POST', headers: { 'content-type': 'application/json', connection: 'close', ...headers },
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body), signal,
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}

// A streaming POST read as server-sent events: { status, headers, events, done, chunks, raw,
// ended, closed, aborted }. `events` are the data: payloads in order, `chunks` the JSON ones
// parsed, `done` whether `data: [DONE]` came, `ended` whether the server ended the response
// properly, `closed` whether the connection closed (ended or not), `aborted` whether we left.
// onChunk(chunk, index) may return 'abort' to disconnect; so does aborting `signal`.
export function postSse(srv, route, body, { headers = {}, onChunk, signal } = {}) {
  // node:http, not fetch: disconnecting must close the socket at once (undici may keep an
  // aborted response's connection for seconds, which also delays the server's exit).
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(JSON.stringify(body), 'utf8');
    const out = { status: 0, headers: null, events: [], chunks: [], done: false, raw: Buffer.alloc(0), aborted: false, ended: false, trailing: null };
    const bufs = [];
    let pending = Buffer.alloc(0);
    let settled = false;
    const settle = (err) => {
      if (settled) return;
      settled = true;
      out.raw = Buffer.concat(bufs);
      out.trailing = pending;
      if (err) reject(err); else resolve(out);
    };
    const req = http.request({
      host: srv.host, port: srv.port, path: route, method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': payload.length, connection: 'close', ...headers },
    });
    const disconnect = () => {
      if (settled) return;
      out.aborted = true;
      req.destroy();
      settle();
    };
    if (signal) {
      if (signal.aborted) { disconnect(); return; }
      signal.addEventListener('abort', disconnect, { once: true });
    }
    req.on('error', (e) => (out.aborted ? settle() : settle(e)));
    req.on('response', (res) => {
      out.status = res.statusCode;
      out.headers = new Headers(Object.entries(res.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v)]));
      res.on('data', (b) => {
        if (settled) return;
        bufs.push(b);
        if (out.status !== 200) return;
        pending = Buffer.concat([pending, b]);
        try {
          for (let nl; (nl = pending.indexOf('\n\n')) >= 0;) {
            const block = pending.subarray(0, nl);
            pending = pending.subarray(nl + 2);
            // Each event's bytes must be valid UTF-8 on their own (no character split across events).
            const text = new TextDecoder('utf-8', { fatal: true }).decode(block);
            for (const line of text.split('\n')) {
              if (!line.startsWith('data:')) continue;
              const data = line.slice(5).trimStart();
              out.events.push(data);
              if (data === '[DONE]') { out.done = true; continue; }
              const chunk = JSON.parse(data);
              out.chunks.push(chunk);
              if (onChunk && onChunk(chunk, out.chunks.length - 1) === 'abort') { disconnect(); return; }
            }
          }
        } catch (e) {
          req.destroy();
          settle(e);
        }
      });
      res.on('end', () => { out.ended = true; settle(); });
      // A connection the server resets mid-stream: what came is kept, `error` says how it ended.
      res.on('error', (e) => { out.error = e.code || e.message; settle(); });
      res.on('close', () => { out.closed = true; settle(); });
    });
    req.end(payload);
  });
}

// Sends raw bytes over a fresh TCP connection and collects what comes back until the server
// closes it (or `timeoutMs`). { status, headers, body, json, raw, closed, error }.
// `write` may be a Buffer/string or an async function(socket) that writes on its own.
export function rawHttp(srv, write, { timeoutMs = 10000, halfClose = false } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: srv.host, port: srv.port, allowHalfOpen: true });
    const bufs = [];
    let settled = false;
    let error = null;
    const finish = (closed) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ ...parseHttpResponse(Buffer.concat(bufs)), closed, error });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.on('data', (d) => {
      bufs.push(d);
      // Done once one whole response is in (the server may keep the connection open).
      const p = parseHttpResponse(Buffer.concat(bufs));
      if (p.complete) finish(false);
    });
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', (e) => { error = e.code || String(e); });
    sock.on('connect', async () => {
      try {
        if (typeof write === 'function') await write(sock);
        else await new Promise((res) => sock.write(write, () => res()));
        if (halfClose) sock.end();
      } catch (e) { error = e.code || String(e); }
    });
  });
}

// Parses an HTTP/1.1 response from bytes: { status, headers, body, json, complete }.
export function parseHttpResponse(buf) {
  const he = buf.indexOf('\r\n\r\n');
  if (he < 0) return { status: 0, headers: {}, body: '', json: undefined, complete: false, raw: buf };
  const head = buf.subarray(0, he).toString('latin1').split('\r\n');
  const m = head[0].match(/^HTTP\/1\.[01] (\d{3})/);
  const headers = {};
  for (const l of head.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = buf.subarray(he + 4);
  let complete = false;
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    complete = body.length >= n;
    body = body.subarray(0, n);
  } else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
    const parts = [];
    let rest = body;
    for (;;) {
      const e = rest.indexOf('\r\n');
      if (e < 0) break;
      const n = parseInt(rest.subarray(0, e).toString(), 16);
      if (Number.isNaN(n) || rest.length < e + 2 + n + 2) break;
      if (n === 0) { complete = true; break; }
      parts.push(rest.subarray(e + 2, e + 2 + n));
      rest = rest.subarray(e + 2 + n + 2);
    }
    body = Buffer.concat(parts);
  }
  const text = body.toString('utf8');
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: m ? Number(m[1]) : 0, headers, body: text, json, complete, raw: buf };
}

// ---------------------------------------------------------------------------------------------
// /metrics (Prometheus text format)

// [{ name, labels: {k: v}, value }] for every sample line; `types` maps family name → type.
export function parseMetrics(text) {
  const samples = [];
  const types = {};
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = line.match(/^# TYPE (\S+) (\S+)$/);
      if (m) types[m[1]] = m[2];
      continue;
    }
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$/);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/y;
      let lm;
      let pos = 0;
      while (pos < m[3].length && (lm = re.exec(m[3]))) { labels[lm[1]] = lm[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c)); pos = re.lastIndex; }
      if (pos !== m[3].length) throw new Error(`bad labels in ${JSON.stringify(line)}`);
    }
    const v = m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4]);
    if (Number.isNaN(v) && m[4] !== 'NaN') throw new Error(`bad value in ${JSON.stringify(line)}`);
    samples.push({ name: m[1], labels, value: v });
  }
  return { samples, types };
}

// Fetches /metrics: { text, samples, types, get(name, labels) } where get sums the samples of
// that name whose labels include `labels` (undefined when there is none).
export async function metrics(srv) {
  const r = await fetch(`${srv.url}/metrics`, { headers: { connection: 'close' } });
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
  const text = await r.text();
  const { samples, types } = parseMetrics(text);
  return {
    text, samples, types, contentType: r.headers.get('content-type'),
    get(name, labels = {}) {
      const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      return hits.length ? hits.reduce((a, s) => a + s.value, 0) : undefined;
    },
  };
}

// Polls /metrics until pred(metrics) holds or `timeoutMs` passes; returns the last metrics and
// whether it held.
export async function waitMetrics(srv, pred, timeoutMs = 1000, everyMs = 20) {
  const t0 = Date.now();
  for (;;) {
    const m = await metrics(srv);
    if (pred(m)) return { m, ok: true, ms: Date.now() - t0 };
    if (Date.now() - t0 > timeoutMs) return { m, ok: false, ms: Date.now() - t0 };
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------
// `slm run` for comparisons: its stdout (the generated text).
export function slmRun(args, { timeoutMs = 60000 } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cliPath, ['run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    let err = '';
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`slm run ${args.join(' ')} timed out`)); }, timeoutMs);
    p.stdout.on('data', (d) => out.push(d));
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`slm run ${args.join(' ')} exited ${code}: ${err}`));
      else resolve(Buffer.concat(out).toString('utf8'));
    });
  });
}
