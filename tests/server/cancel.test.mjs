// A client that disconnects a stream stops its generation and frees its slot at once; SIGTERM
// and SIGINT end the streams in flight cleanly and the server exits with status 0.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  startServer, sharedPath, dataPath, missingShared, openaiClient, postSse, postJson, metrics, waitMetrics, sleep, within,
} from './harness.mjs';
import { assertChatStream, assertCompletionStream } from './shapes.mjs';

const STORIES = 'models/stories260K.gguf';
const LONG = 2000;  // stories260K never ends a greedy story on its own: this many tokens take seconds
const serverArgs = ['--chat-template', dataPath('stories260K-chat.jinja'), '--parallel', '1'];

// After a disconnect: the slot is free within a second, generation stopped far short of LONG
// tokens and stays stopped, and the next request is served at once.
async function checkStopped(srv, genBefore, what) {
  const t0 = Date.now();
  const { ok, m, ms } = await waitMetrics(srv, (x) => x.get('slm_slots_busy') === 0, 1000, 10);
  assert.ok(ok, `${what}: slm_slots_busy still ${m.get('slm_slots_busy')} ${Date.now() - t0} ms after the disconnect`);
  const generated = m.get('slm_generated_tokens_total') - genBefore;
  console.log(`${what}: slot free ${ms} ms after the disconnect; ${generated} tokens generated in all`);
  assert.ok(generated < LONG / 4, `${what}: ${generated} of ${LONG} tokens were generated: the generation went on after the client left`);
  await sleep(300);
  const later = (await metrics(srv)).get('slm_generated_tokens_total') - genBefore;
  assert.equal(later, generated, `${what}: tokens are still being generated after the slot was freed`);
  assert.equal(m.get('slm_queue_depth'), 0);
  const t1 = Date.now();
  const r = await postJson(srv, '/v1/completions', { prompt: 'The cat', max_tokens: 16, temperature: 0 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.usage.completion_tokens, 16);
  assert.ok(Date.now() - t1 < 2000, `${what}: the next request took ${Date.now() - t1} ms`);
}

describe('disconnecting a stream (--parallel 1)', { skip: missingShared(STORIES) }, () => {
  let srv, client;
  before(async () => {
    srv = await startServer({ model: sharedPath(STORIES), args: serverArgs });
    client = await openaiClient(srv);
  });
  after(async () => {
    if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null });
  });

  test('chat stream aborted (openai client, AbortController) after 5 content chunks', { timeout: 30000 }, async () => {
    const genBefore = (await metrics(srv)).get('slm_generated_tokens_total');
    const ac = new AbortController();
    const stream = await client.chat.completions.create({
      model: 'x', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: LONG, temperature: 0, stream: true,
    }, { signal: ac.signal });
    let contentChunks = 0;
    let aborted = false;
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content) ++contentChunks;
        if (contentChunks === 5) { ac.abort(); break; }
      }
    } catch (e) {
      aborted = true;
      assert.ok(ac.signal.aborted, `the stream failed before the abort: ${e}`);
    }
    assert.ok(aborted || ac.signal.aborted, 'the stream ended before 5 content chunks');
    assert.equal(contentChunks, 5);
    await checkStopped(srv, genBefore, 'chat');
  });

  test('completions stream disconnected after 5 chunks', { timeout: 30000 }, async () => {
    const genBefore = (await metrics(srv)).get('slm_generated_tokens_total');
    const r = await postSse(srv, '/v1/completions', { prompt: 'Once upon a time', max_tokens: LONG, temperature: 0, stream: true },
                            { onChunk: (c, i) => (i === 4 ? 'abort' : undefined) });
    assert.equal(r.status, 200);
    assert.ok(r.aborted, 'the stream ended before 5 chunks');
    assert.equal(r.chunks.length, 5);
    await checkStopped(srv, genBefore, 'completions');
  });

  test('a stream that is never read is stopped too (the client closes at once)', { timeout: 30000 }, async () => {
    const genBefore = (await metrics(srv)).get('slm_generated_tokens_total');
    const payload = JSON.stringify({ prompt: 'Lily and Ben', max_tokens: LONG, temperature: 0, stream: true });
    const req = http.request({
      host: srv.host, port: srv.port, path: '/v1/completions', method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), connection: 'close' },
    });
    req.on('error', () => {});
    const res = await new Promise((resolve) => { req.on('response', resolve); req.end(payload); });
    assert.equal(res.statusCode, 200);
    // Wait until it generates, then leave without reading a byte.
    const busy = await waitMetrics(srv, (m) => m.get('slm_generated_tokens_total') > genBefore, 2000, 5);
    assert.ok(busy.ok, 'the request never generated');
    req.destroy();
    await checkStopped(srv, genBefore, 'unread stream');
  });
});

// The shutdown races the stream's last writes, so each signal is tried several times: every
// try must end the stream with its final chunk and [DONE] (the server stops listening only
// once its streams are written), never cut or reset it.
const TRIES = 5;

describe('SIGTERM and SIGINT with a stream in flight', { skip: missingShared(STORIES) }, () => {
  for (const sig of ['SIGTERM', 'SIGINT']) {
    test(`${sig}: the stream ends cleanly and the server exits 0 (${TRIES} tries)`, { timeout: 60000 }, async () => {
      const outcomes = [];
      for (let t = 0; t < TRIES; ++t) {
        const chat = t % 2 === 0;
        const srv = await startServer({ model: sharedPath(STORIES), args: serverArgs });
        try {
          let signalledAt = 0;
          const route = chat ? '/v1/chat/completions' : '/v1/completions';
          const body = chat
            ? { messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: LONG, temperature: 0, stream: true }
            : { prompt: 'Once upon a time', max_tokens: LONG, temperature: 0, stream: true };
          const r = await within(postSse(srv, route, body, {
            onChunk: (c, i) => {
              if (i === 4) { signalledAt = Date.now(); srv.proc.kill(sig); }
            },
          }), 10000);
          assert.notEqual(r, 'timeout', `${sig}: the stream was still open 10 s later`);
          const endedAfter = Date.now() - signalledAt;
          assert.ok(signalledAt > 0, 'the stream ended before the signal');
          assert.equal(r.status, 200);
          assert.ok(r.chunks.length < LONG, 'the whole generation ran');
          assert.ok(r.done, `${sig}: the stream ended without [DONE]`);
          assert.equal(r.events.at(-1), '[DONE]');
          const s = chat ? assertChatStream(r.chunks) : assertCompletionStream(r.chunks);
          assert.ok(['stop', 'length'].includes(s.finish));
          const exit = await within(srv.exited, 10000);
          assert.notEqual(exit, 'timeout', `slm serve did not exit within 10 s of ${sig}`);
          assert.deepEqual(exit, { code: 0, signal: null }, `exit after ${sig}`);
          assert.match(srv.stderr, /shutting down/i);
          const how = r.done ? 'final chunk and [DONE]' : r.ended ? 'response ended without [DONE]' : `connection reset (${r.error ?? 'closed'}) after ${r.chunks.length} chunks, no final chunk`;
          outcomes.push({ route, clean: r.done, how, endedAfter });
        } finally {
          await srv.stop('SIGKILL');
        }
      }
      for (const o of outcomes) console.log(`${sig} ${o.route}: ${o.how}, ${o.endedAfter} ms after the signal`);
      const bad = outcomes.filter((o) => !o.clean);
      assert.equal(bad.length, 0, `${bad.length} of ${TRIES} streams were cut instead of ended after ${sig}: ${bad.map((o) => `${o.route}: ${o.how}`).join('; ')}`);
    });
  }

  test('SIGTERM with a whole (non-streamed) request in flight: it is answered (finish_reason stop), exit 0', { timeout: 30000 }, async () => {
    const srv = await startServer({ model: sharedPath(STORIES), args: serverArgs });
    try {
      const req = postJson(srv, '/v1/completions', { prompt: 'Once upon a time', max_tokens: LONG, temperature: 0 }).catch((e) => ({ error: e }));
      const started = await waitMetrics(srv, (m) => m.get('slm_generated_tokens_total') > 0, 5000, 5);
      assert.ok(started.ok);
      srv.proc.kill('SIGTERM');
      const r = await req;
      assert.ok(!r.error, `the request failed: ${r.error?.cause?.code ?? r.error}`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.choices[0].finish_reason, 'stop');
      assert.ok(r.json.usage.completion_tokens < LONG);
      const exit = await within(srv.exited, 10000);
      assert.deepEqual(exit, { code: 0, signal: null });
    } finally {
      await srv.stop('SIGKILL');
    }
  });
});
