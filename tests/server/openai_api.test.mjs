// The OpenAI API of `slm serve` through the official openai client: chat completions and
// completions, whole and streamed, on stories260K (with tests/data/stories260K-chat.jinja) and
// on the phi3 fixture (its own template); response shapes, usage, max_tokens, stop strings,
// logprobs, seeds, /v1/models, /health, /metrics; completions at temperature 0 with an F32 KV
// cache equal `slm run`; a chat's second turn reuses the first turn's cached prompt.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startServer, sharedPath, dataPath, missingShared, openaiClient, postSse, postJson, httpGet, metrics, waitMetrics,
  slmRun, cliPath, importDep, within,
} from './harness.mjs';
import {
  assertChatCompletion, assertCompletion, assertChatStream, assertCompletionStream, assertWellFormed, assertErrorBody, drain,
} from './shapes.mjs';

const STORIES = 'models/stories260K.gguf';
const PHI3 = 'fixtures/logits/phi3-L3-E64-F32.gguf';
const T = { timeout: 60000 };

// Token count of `text` as `slm tokenize` sees it (BOS included, special text not parsed).
function tokenCount(model, text) {
  const r = spawnSync(cliPath, ['tokenize', '-m', model, '-p', text], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split(/\s+/).length;
}

describe('stories260K with --chat-template, --kv-type f32', { skip: missingShared(STORIES) }, () => {
  let srv, client, model;
  const modelPath = sharedPath(STORIES);

  before(async () => {
    srv = await startServer({
      model: modelPath,
      args: ['--chat-template', dataPath('stories260K-chat.jinja'), '--kv-type', 'f32', '--parallel', '2'],
    });
    client = await openaiClient(srv);
  });
  after(async () => {
    if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null }, 'SIGTERM: exit status 0');
  });

  test('GET /health and GET /v1/models (client.models.list)', T, async () => {
    const h = await httpGet(srv, '/health');
    assert.equal(h.status, 200);
    assert.equal(h.json.status, 'ok');
    const list = [];
    for await (const m of client.models.list()) list.push(m);
    assert.ok(list.length >= 1, 'at least one model');
    for (const m of list) {
      assert.equal(m.object, 'model');
      assert.ok(typeof m.id === 'string' && m.id.length > 0);
    }
    model = list[0].id;
    const raw = (await httpGet(srv, '/v1/models')).json;
    assert.equal(raw.object, 'list');
    // client.models.retrieve: one model by id; an unknown id is a 404.
    const one = await client.models.retrieve(model);
    assert.equal(one.id, model);
    assert.equal(one.object, 'model');
    const missing = await httpGet(srv, '/v1/models/gpt-4o');
    assert.equal(missing.status, 404);
    assertErrorBody(missing.json);
  });

  test('chat completion: shape, usage, finish_reason length at max_tokens', T, async () => {
    const r = await client.chat.completions.create({
      model: model ?? 'stories260K', messages: [{ role: 'user', content: 'Once upon a time' }],
      max_tokens: 24, temperature: 0,
    });
    const c = assertChatCompletion(r, { model });
    assert.equal(c.finish, 'length');
    assert.equal(c.usage.completion_tokens, 24);
    assert.ok(c.content.length > 24, `24 tokens of story are more than 24 characters: ${JSON.stringify(c.content)}`);
    // max_completion_tokens is the newer name of max_tokens.
    const r2 = await client.chat.completions.create({
      model: 'x', messages: [{ role: 'user', content: 'Once upon a time' }], max_completion_tokens: 24, temperature: 0,
    });
    assert.equal(r2.choices[0].message.content, c.content);
    assert.equal(r2.usage.completion_tokens, 24);
    assert.equal(r2.choices[0].finish_reason, 'length');
    // Different ids per response.
    assert.notEqual(r2.id, r.id);
  });

  test('chat: content as text parts and a system message', T, async () => {
    const base = { model: 'x', max_tokens: 16, temperature: 0 };
    const a = await client.chat.completions.create({ ...base, messages: [{ role: 'user', content: 'Once upon a time' }] });
    const b = await client.chat.completions.create({
      ...base, messages: [{ role: 'user', content: [{ type: 'text', text: 'Once upon ' }, { type: 'text', text: 'a time' }] }],
    });
    assert.equal(b.choices[0].message.content, a.choices[0].message.content, 'text parts are joined');
    assert.equal(b.usage.prompt_tokens, a.usage.prompt_tokens);
    const s = await client.chat.completions.create({
      ...base, messages: [{ role: 'system', content: 'Lily had a dog.' }, { role: 'user', content: 'Once upon a time' }],
    });
    assertChatCompletion(s);
    assert.ok(s.usage.prompt_tokens > a.usage.prompt_tokens, 'the system message is part of the prompt');
  });

  test('chat streamed equals chat whole (text and usage); SSE framing ends with [DONE]', T, async () => {
    const req = { model: 'x', messages: [{ role: 'user', content: 'Lily and Ben' }], max_tokens: 32, temperature: 0 };
    const whole = assertChatCompletion(await client.chat.completions.create(req));
    const chunks = await drain(await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } }));
    const s = assertChatStream(chunks, { includeUsage: true });
    assert.equal(s.content, whole.content);
    assert.equal(s.finish, whole.finish);
    assert.equal(s.usage.prompt_tokens, whole.usage.prompt_tokens);
    assert.equal(s.usage.completion_tokens, whole.usage.completion_tokens);
    assert.equal(s.usage.total_tokens, whole.usage.total_tokens);
    // Without include_usage: no usage chunk.
    const plain = assertChatStream(await drain(await client.chat.completions.create({ ...req, stream: true })));
    assert.equal(plain.content, whole.content);
    // The wire format itself: text/event-stream, data: lines, [DONE] last.
    const raw = await postSse(srv, '/v1/chat/completions', { ...req, stream: true });
    assert.equal(raw.status, 200);
    assert.match(raw.headers.get('content-type'), /^text\/event-stream/);
    assert.equal(raw.events.at(-1), '[DONE]', 'the stream ends with data: [DONE]');
    assert.equal(raw.events.filter((e) => e === '[DONE]').length, 1);
    assert.ok(raw.ended, 'the server ends the response after [DONE]');
    assert.equal(assertChatStream(raw.chunks).content, whole.content);
  });

  test('completions whole and streamed: shape, usage equal, prompt_tokens as slm tokenize counts', T, async () => {
    const prompt = 'Once upon a time';
    const req = { model: 'x', prompt, max_tokens: 40, temperature: 0 };
    const whole = assertCompletion(await client.completions.create(req));
    assert.equal(whole.finish, 'length');
    assert.equal(whole.usage.completion_tokens, 40);
    assert.equal(whole.usage.prompt_tokens, tokenCount(modelPath, prompt), 'prompt_tokens: BOS + the prompt');
    const chunks = await drain(await client.completions.create({ ...req, stream: true, stream_options: { include_usage: true } }));
    const s = assertCompletionStream(chunks, { includeUsage: true });
    assert.equal(s.text, whole.text);
    assert.equal(s.finish, 'length');
    assert.deepEqual(
      [s.usage.prompt_tokens, s.usage.completion_tokens, s.usage.total_tokens],
      [whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens]);
    const raw = await postSse(srv, '/v1/completions', { ...req, stream: true });
    assert.equal(raw.events.at(-1), '[DONE]');
    assert.equal(assertCompletionStream(raw.chunks).text, whole.text);
  });

  test('stop strings cut the text (string and array, whole and streamed) with finish_reason stop', T, async () => {
    const prompt = 'Once upon a time';
    const full = (await client.completions.create({ model: 'x', prompt, max_tokens: 48, temperature: 0 })).choices[0].text;
    // A stop string from the middle of the text, spanning token boundaries.
    const mid = Math.floor(full.length / 2);
    const stop = full.slice(mid, mid + 5);
    const cut = full.slice(0, full.indexOf(stop));
    assert.ok(cut.length > 0 && cut.length < full.length);
    for (const stopField of [stop, ['@@never@@', stop]]) {
      const r = await client.completions.create({ model: 'x', prompt, max_tokens: 48, temperature: 0, stop: stopField });
      assert.equal(r.choices[0].text, cut, `stop ${JSON.stringify(stopField)}`);
      assert.equal(r.choices[0].finish_reason, 'stop');
      assert.ok(r.usage.completion_tokens < 48);
      const s = assertCompletionStream(await drain(await client.completions.create({
        model: 'x', prompt, max_tokens: 48, temperature: 0, stop: stopField, stream: true })));
      assert.equal(s.text, cut, 'streamed text stops at the same place');
      assert.equal(s.finish, 'stop');
    }
    // Chat too.
    const msgs = [{ role: 'user', content: prompt }];
    const cfull = (await client.chat.completions.create({ model: 'x', messages: msgs, max_tokens: 48, temperature: 0 })).choices[0].message.content;
    const cstop = cfull.slice(Math.floor(cfull.length / 2), Math.floor(cfull.length / 2) + 4);
    const ccut = cfull.slice(0, cfull.indexOf(cstop));
    const c = await client.chat.completions.create({ model: 'x', messages: msgs, max_tokens: 48, temperature: 0, stop: [cstop] });
    assert.equal(c.choices[0].message.content, ccut);
    assert.equal(c.choices[0].finish_reason, 'stop');
    const cs = assertChatStream(await drain(await client.chat.completions.create({
      model: 'x', messages: msgs, max_tokens: 48, temperature: 0, stop: cstop, stream: true })));
    assert.equal(cs.content, ccut);
    assert.equal(cs.finish, 'stop');
    // A stop string that never appears changes nothing.
    const n = await client.completions.create({ model: 'x', prompt, max_tokens: 48, temperature: 0, stop: ['QQQ', 'ZZZ', 'XXX', 'WWW'] });
    assert.equal(n.choices[0].text, full);
    assert.equal(n.choices[0].finish_reason, 'length');
  });

  test('chat logprobs and top_logprobs (whole and streamed)', T, async () => {
    const req = { model: 'x', messages: [{ role: 'user', content: 'The cat' }], max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 3 };
    const r = await client.chat.completions.create(req);
    const c = r.choices[0];
    const content = c.logprobs.content;
    assert.ok(Array.isArray(content), 'logprobs.content is an array');
    assert.equal(content.length, r.usage.completion_tokens, 'one entry per generated token');
    assert.equal(content.map((e) => e.token).join(''), c.message.content, 'the tokens spell the content');
    for (const [i, e] of content.entries()) {
      assert.equal(typeof e.token, 'string');
      assert.ok(Number.isFinite(e.logprob) && e.logprob <= 0, `logprob ${e.logprob}`);
      assert.deepEqual(e.bytes, [...Buffer.from(e.token, 'utf8')], `bytes of token ${i}`);
      assert.equal(e.top_logprobs.length, 3, 'top_logprobs: 3 alternatives');
      let mass = 0;
      for (let k = 0; k < 3; ++k) {
        const a = e.top_logprobs[k];
        assert.equal(typeof a.token, 'string');
        assert.ok(Number.isFinite(a.logprob) && a.logprob <= 0);
        if (k > 0) assert.ok(a.logprob <= e.top_logprobs[k - 1].logprob, 'top_logprobs best first');
        mass += Math.exp(a.logprob);
      }
      assert.ok(mass <= 1 + 1e-4, `probabilities of the alternatives sum to ${mass} > 1`);
      // Greedy: the chosen token is the most likely one.
      assert.ok(Math.abs(e.logprob - e.top_logprobs[0].logprob) < 1e-4, `token ${i}: greedy choice is not the best alternative`);
      assert.equal(e.top_logprobs[0].token, e.token);
    }
    // Streamed: the same tokens and log-probabilities, spread over the chunks.
    const chunks = await drain(await client.chat.completions.create({ ...req, stream: true }));
    const streamed = chunks.flatMap((ch) => ch.choices[0]?.logprobs?.content ?? []);
    assert.deepEqual(streamed.map((e) => e.token), content.map((e) => e.token));
    for (let i = 0; i < content.length; ++i) assert.ok(Math.abs(streamed[i].logprob - content[i].logprob) < 1e-5);
    // logprobs without top_logprobs: no alternatives; without logprobs: none at all.
    const bare = await client.chat.completions.create({ ...req, top_logprobs: undefined });
    assert.equal(bare.choices[0].logprobs.content.length, bare.usage.completion_tokens);
    for (const e of bare.choices[0].logprobs.content) assert.deepEqual(e.top_logprobs, []);
    const none = await client.chat.completions.create({ ...req, logprobs: undefined, top_logprobs: undefined });
    assert.equal(none.choices[0].logprobs ?? null, null);
  });

  test('seed: same seed same text at temperature 1, whole and streamed; other seeds differ', T, async () => {
    const req = { model: 'x', prompt: 'Once upon a time', max_tokens: 40, temperature: 1.0, top_p: 1, seed: 1234 };
    const a = (await client.completions.create(req)).choices[0].text;
    const b = (await client.completions.create(req)).choices[0].text;
    assert.equal(b, a, 'same seed, same text');
    const s = assertCompletionStream(await drain(await client.completions.create({ ...req, stream: true })));
    assert.equal(s.text, a, 'streamed with the same seed, same text');
    const others = [];
    for (const seed of [1, 2, 3]) others.push((await client.completions.create({ ...req, seed })).choices[0].text);
    assert.ok(others.some((o) => o !== a), 'three other seeds all gave the same text as seed 1234: the seed is ignored');
    // Greedy text differs from sampled text (temperature is honoured).
    const greedy = (await client.completions.create({ ...req, temperature: 0 })).choices[0].text;
    assert.ok([a, ...others].some((o) => o !== greedy), 'temperature 1 gives the greedy text for four seeds');
    // Chat as well.
    const creq = { model: 'x', messages: [{ role: 'user', content: 'Lily and Ben' }], max_tokens: 32, temperature: 1.0, seed: 99 };
    const c1 = (await client.chat.completions.create(creq)).choices[0].message.content;
    const c2 = assertChatStream(await drain(await client.chat.completions.create({ ...creq, stream: true }))).content;
    assert.equal(c2, c1);
  });

  test("llama.cpp's sampling fields (typical_p, top_n_sigma, xtc_*, mirostat*) are honoured, through the OpenAI client", T, async () => {
    const req = { model: 'x', prompt: 'Once upon a time', max_tokens: 40, temperature: 0 };
    const greedy = (await client.completions.create(req)).choices[0].text;
    // XTC at probability 1 drops the likeliest tokens wherever two or more reach 10%: greedy
    // then takes another path. Typical sampling at 0.5 leaves out a too-likely token too.
    const xtc = (await client.completions.create({ ...req, xtc_probability: 1, xtc_threshold: 0.1 })).choices[0].text;
    assert.notEqual(xtc, greedy, 'xtc_probability 1 gave the greedy text: the field is ignored');
    const typical = (await client.completions.create({ ...req, typical_p: 0.5 })).choices[0].text;
    assert.notEqual(typical, greedy, 'typical_p 0.5 gave the greedy text: the field is ignored');
    // top_n_sigma keeps the argmax: greedy is unchanged.
    assert.equal((await client.completions.create({ ...req, top_n_sigma: 1 })).choices[0].text, greedy);
    // Mirostat at temperature 1: same seed, same text; a seed is still honoured.
    const m = { ...req, temperature: 1, seed: 5, mirostat: 2, mirostat_tau: 3, mirostat_eta: 0.2 };
    const m1 = (await client.completions.create(m)).choices[0].text;
    assert.equal((await client.completions.create(m)).choices[0].text, m1);
    assert.ok(m1.length > 20, m1);
    // "samplers": top-k 1 at temperature 1 is greedy unless the list leaves top-k out.
    const k1 = { ...req, temperature: 1, top_k: 1, seed: 9 };
    assert.equal((await client.completions.create({ ...k1, samplers: ['top_k', 'temperature'] })).choices[0].text, greedy);
    assert.equal((await client.completions.create({ ...k1, samplers: 'kt' })).choices[0].text, greedy);
    assert.notEqual((await client.completions.create({ ...k1, samplers: ['min_p', 'temperature'] })).choices[0].text, greedy);
    const reordered = await postJson(srv, '/v1/completions', { ...k1, samplers: ['temperature', 'top_k'] });
    assert.equal(reordered.status, 400);
    assert.match(reordered.text, /default order/);
    // DRY: the greedy story repeats a sentence within 200 tokens; with DRY it goes another way.
    const long = { ...req, max_tokens: 200 };
    const plain200 = (await client.completions.create(long)).choices[0].text;
    const dry = (await client.completions.create({ ...long, dry_multiplier: 0.8, dry_sequence_breakers: ['\n'] })).choices[0].text;
    assert.notEqual(dry, plain200, 'dry_multiplier 0.8 gave the greedy text: the field is ignored');
    const m2 = (await client.completions.create({ ...m, mirostat: 1 })).choices[0].text;
    assert.ok(m2.length > 20, m2);
    // Their defaults are announced where llama.cpp's server announces them.
    const props = (await httpGet(srv, "/props")).json;
    const params = props.default_generation_settings.params;
    for (const [k, v] of Object.entries({ typical_p: 1, top_n_sigma: -1, xtc_probability: 0, mirostat: 0, mirostat_tau: 5,
                                          dry_multiplier: 0, dry_base: 1.75, dry_allowed_length: 2 }))
      assert.equal(params[k], v, `/props ${k}`);
  });

  test('completions at temperature 0 equal `slm run --temp 0 --kv-type f32` for three prompts', T, async () => {
    for (const prompt of ['Once upon a time', 'Lily and Ben', 'The cat']) {
      const expected = await slmRun(['-m', modelPath, '-p', prompt, '-n', '48', '--temp', '0', '--kv-type', 'f32', '-t', '1']);
      assert.ok(expected.length > 0);
      const r = await client.completions.create({ model: 'x', prompt, max_tokens: 48, temperature: 0 });
      assert.equal(r.choices[0].text, expected, `prompt ${JSON.stringify(prompt)}`);
      assert.equal(r.usage.completion_tokens, 48);
    }
  });

  test('completions with echo: the text starts with the prompt, whole and streamed', T, async () => {
    const prompt = 'Lily and Ben';
    const plain = await client.completions.create({ model: 'x', prompt, max_tokens: 12, temperature: 0 });
    const echoed = await client.completions.create({ model: 'x', prompt, max_tokens: 12, temperature: 0, echo: true });
    assert.equal(echoed.choices[0].text, prompt + plain.choices[0].text);
    assert.equal(echoed.usage.completion_tokens, plain.usage.completion_tokens);
    const chunks = await drain(await client.completions.create({ model: 'x', prompt, max_tokens: 12, temperature: 0, echo: true, stream: true }));
    assert.equal(chunks[0].choices[0].text, prompt);
    assert.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), echoed.choices[0].text);
  });

  test('prompt cache: the second chat turn reuses the first (usage and /metrics)', T, async () => {
    const first = [{ role: 'system', content: 'Tim and Sue were friends.' },
                   { role: 'user', content: 'Once upon a time, there was a little girl named Lily. She loved to play outside.' }];
    const r1 = await client.chat.completions.create({ model: 'x', messages: first, max_tokens: 24, temperature: 0 });
    const reply = r1.choices[0].message.content;
    const m0 = await metrics(srv);
    const second = [...first, { role: 'assistant', content: reply }, { role: 'user', content: 'One day, Lily saw a dog.' }];
    const r2 = await client.chat.completions.create({ model: 'x', messages: second, max_tokens: 8, temperature: 0 });
    const cached = r2.usage.prompt_tokens_details.cached_tokens;
    assert.ok(r2.usage.prompt_tokens > r1.usage.prompt_tokens);
    assert.ok(cached >= r1.usage.prompt_tokens - 2,
              `cached_tokens ${cached}: about the first turn's ${r1.usage.prompt_tokens} prompt tokens expected`);
    assert.ok(cached < r2.usage.prompt_tokens, 'at least the new message is evaluated');
    const m1 = await metrics(srv);
    const grown = m1.get('slm_prompt_tokens_cached_total') - m0.get('slm_prompt_tokens_cached_total');
    assert.equal(grown, cached, 'slm_prompt_tokens_cached_total grows by cached_tokens');
    assert.equal(m1.get('slm_prompt_tokens_total') - m0.get('slm_prompt_tokens_total'), r2.usage.prompt_tokens);
    // Reusing the cache must not change the text: the same second turn on a fresh server agrees.
    const fresh = await startServer({
      model: modelPath, args: ['--chat-template', dataPath('stories260K-chat.jinja'), '--kv-type', 'f32', '--parallel', '1'],
    });
    try {
      const fc = await openaiClient(fresh);
      const f2 = await fc.chat.completions.create({ model: 'x', messages: second, max_tokens: 8, temperature: 0 });
      assert.equal(f2.usage.prompt_tokens_details.cached_tokens, 0, 'a fresh server has nothing cached');
      assert.equal(f2.choices[0].message.content, r2.choices[0].message.content, 'cached prefix changes the reply');
    } finally {
      assert.deepEqual(await fresh.stop(), { code: 0, signal: null });
    }
  });

  test('errors reach the openai client as APIError (status, message, code); context default is the training context', T, async () => {
    const mod = await importDep('openai');
    const { BadRequestError } = mod;
    await assert.rejects(
      client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'Hi' }], n: 2 }),
      (e) => {
        assert.ok(e instanceof BadRequestError, `not a BadRequestError: ${e}`);
        assert.equal(e.status, 400);
        assert.ok(e.message.length > 0);
        assert.ok(e.error && typeof e.error.message === 'string', 'the error body reaches the client');
        return true;
      });
    // stories260K was trained on 2048 tokens: that is the default context per slot (-c).
    const prompt = 'Once upon a time';
    const n = tokenCount(modelPath, prompt);
    await assert.rejects(client.completions.create({ model: 'x', prompt, max_tokens: 2048 - n + 1 }), (e) => {
      assert.equal(e.status, 400);
      assert.match(e.message, /2048/, 'the message names the context');
      return true;
    });
    // The largest request that fits is accepted (left after its first chunk).
    const r = await postSse(srv, '/v1/completions', { prompt, max_tokens: 2048 - n, stream: true }, { onChunk: () => 'abort' });
    assert.equal(r.status, 200, r.raw.toString());
    const idle = await waitMetrics(srv, (m) => m.get('slm_slots_busy') === 0, 2000);
    assert.ok(idle.ok, 'the abandoned request still holds its slot');
  });

  test('/metrics: Prometheus text, the named metrics, counters that add up', T, async () => {
    const m0 = await metrics(srv);
    assert.match(m0.contentType, /^text\/plain/);
    const types = {
      slm_requests_total: 'counter', slm_prompt_tokens_total: 'counter', slm_prompt_tokens_cached_total: 'counter',
      slm_generated_tokens_total: 'counter', slm_queue_depth: 'gauge', slm_slots_busy: 'gauge', slm_slots_total: 'gauge',
      slm_time_to_first_token_seconds: 'histogram', slm_inter_token_latency_seconds: 'histogram',
    };
    for (const [name, type] of Object.entries(types)) assert.equal(m0.types[name], type, `# TYPE ${name} ${type}`);
    assert.equal(m0.get('slm_slots_total'), 2, 'slm_slots_total is --parallel');
    assert.equal(m0.get('slm_slots_busy'), 0, 'idle server: no busy slot');
    assert.equal(m0.get('slm_queue_depth'), 0);
    const chatOk = { route: '/v1/chat/completions', status: '200' };
    const c0 = m0.get('slm_requests_total', chatOk) ?? 0;
    assert.ok(c0 > 0, 'earlier chat requests are counted');

    const r = await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'The dog' }], max_tokens: 20, temperature: 0 });
    const chunks = await drain(await client.chat.completions.create({
      model: 'x', messages: [{ role: 'user', content: 'The dog' }], max_tokens: 20, temperature: 0, stream: true }));
    assertChatStream(chunks);
    const { m: m1, ok } = await waitMetrics(srv, (m) => m.get('slm_requests_total', chatOk) >= c0 + 2, 2000);
    assert.ok(ok, `slm_requests_total${JSON.stringify(chatOk)} did not grow by 2`);
    assert.equal(m1.get('slm_requests_total', chatOk), c0 + 2);
    assert.equal(m1.get('slm_generated_tokens_total') - m0.get('slm_generated_tokens_total'), 2 * r.usage.completion_tokens);
    assert.equal(m1.get('slm_prompt_tokens_total') - m0.get('slm_prompt_tokens_total'), 2 * r.usage.prompt_tokens);
    const ttft = 'slm_time_to_first_token_seconds';
    const itl = 'slm_inter_token_latency_seconds';
    assert.equal(m1.get(`${ttft}_count`) - m0.get(`${ttft}_count`), 2, 'one time-to-first-token per request');
    assert.equal(m1.get(`${itl}_count`) - m0.get(`${itl}_count`), 2 * (r.usage.completion_tokens - 1),
                 'one inter-token latency per token after the first');
    for (const h of [ttft, itl]) {
      const buckets = m1.samples.filter((s) => s.name === `${h}_bucket`);
      assert.ok(buckets.length >= 3, `${h} has buckets`);
      const les = buckets.map((b) => (b.labels.le === '+Inf' ? Infinity : Number(b.labels.le)));
      for (let i = 1; i < buckets.length; ++i) {
        assert.ok(les[i] > les[i - 1], `${h}: le increasing`);
        assert.ok(buckets[i].value >= buckets[i - 1].value, `${h}: buckets are cumulative`);
      }
      assert.equal(les.at(-1), Infinity);
      assert.equal(buckets.at(-1).value, m1.get(`${h}_count`), `${h}: +Inf bucket == _count`);
      assert.ok(m1.get(`${h}_sum`) > 0);
    }
    // A 404 is counted under its status, and the scanner's path does not become a label.
    assert.equal((await httpGet(srv, '/no/such/route/zqxjv')).status, 404);
    const { m: m2 } = await waitMetrics(srv, (m) => m.samples.some((s) => s.name === 'slm_requests_total' && s.labels.status === '404'), 2000);
    assert.ok(m2.samples.some((s) => s.name === 'slm_requests_total' && s.labels.status === '404'), '404 counted');
    assert.ok(!m2.text.includes('zqxjv'), 'request paths must not become metric labels');
  });
});

describe('phi3 fixture with its own chat template', { skip: missingShared(PHI3) }, () => {
  let srv, client;
  const modelPath = sharedPath(PHI3);

  before(async () => {
    srv = await startServer({ model: modelPath, args: ['--parallel', '2'] });
    client = await openaiClient(srv);
  });
  after(async () => {
    if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null }, 'SIGTERM: exit status 0');
  });

  test('chat and completions, whole and streamed, agree; the template adds tokens', T, async () => {
    const creq = { model: 'x', messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 24, temperature: 0 };
    const whole = assertChatCompletion(await client.chat.completions.create(creq));
    if (whole.finish === 'length') assert.equal(whole.usage.completion_tokens, 24);
    else assert.ok(whole.usage.completion_tokens < 24);
    const s = assertChatStream(await drain(await client.chat.completions.create({ ...creq, stream: true, stream_options: { include_usage: true } })),
                               { includeUsage: true });
    assert.equal(s.content, whole.content);
    assert.deepEqual([s.usage.prompt_tokens, s.usage.completion_tokens], [whole.usage.prompt_tokens, whole.usage.completion_tokens]);

    const preq = { model: 'x', prompt: 'Hello there', max_tokens: 24, temperature: 0 };
    const pw = assertCompletion(await client.completions.create(preq));
    const ps = assertCompletionStream(await drain(await client.completions.create({ ...preq, stream: true, stream_options: { include_usage: true } })),
                                      { includeUsage: true });
    assert.equal(ps.text, pw.text);
    assert.deepEqual([ps.usage.prompt_tokens, ps.usage.completion_tokens], [pw.usage.prompt_tokens, pw.usage.completion_tokens]);
    assert.equal(pw.usage.prompt_tokens, tokenCount(modelPath, 'Hello there'));
    assert.ok(whole.usage.prompt_tokens > pw.usage.prompt_tokens, 'the chat template wraps the message in more tokens');
  });

  test('the default context per slot is min(training context 4096, 4096)', T, async () => {
    const n = tokenCount(modelPath, 'Hello');
    const over = await postJson(srv, '/v1/completions', { prompt: 'Hello', max_tokens: 4096 - n + 1 });
    assert.equal(over.status, 400, over.text);
    assert.match(over.json.error.message, /4096/);
    const fits = await postSse(srv, '/v1/completions', { prompt: 'Hello', max_tokens: 4096 - n, stream: true }, { onChunk: () => 'abort' });
    assert.equal(fits.status, 200, fits.raw.toString());
  });

  test('streams never split a UTF-8 character (32k vocabulary, many scripts)', T, async () => {
    let nonAscii = 0;
    for (const seed of [1, 2, 3, 4]) {
      const req = { model: 'x', messages: [{ role: 'user', content: 'Écris une histoire 日本語' }], max_tokens: 64, temperature: 1.5, top_p: 1, seed };
      const whole = (await client.chat.completions.create(req)).choices[0].message.content;
      assertWellFormed(whole, 'whole content');
      // postSse decodes every event's bytes with a fatal UTF-8 decoder.
      const raw = await postSse(srv, '/v1/chat/completions', { ...req, stream: true });
      assert.equal(raw.status, 200);
      assert.equal(raw.events.at(-1), '[DONE]');
      const s = assertChatStream(raw.chunks);
      assert.equal(s.content, whole, `seed ${seed}: streamed content differs from the whole one`);
      nonAscii += [...whole].filter((ch) => ch.codePointAt(0) > 0x7f).length;
      const p = await postSse(srv, '/v1/completions', { model: 'x', prompt: 'Ünïcödé ✓', max_tokens: 64, temperature: 1.5, top_p: 1, seed, stream: true });
      const pt = assertCompletionStream(p.chunks).text;
      const pw = (await client.completions.create({ model: 'x', prompt: 'Ünïcödé ✓', max_tokens: 64, temperature: 1.5, top_p: 1, seed })).choices[0].text;
      assert.equal(pt, pw);
    }
    assert.ok(nonAscii > 10, `the fixture should produce non-ASCII text to make this test mean something (got ${nonAscii} characters)`);
  });
});

describe('while the model loads', () => {
  // The model file is a FIFO: the server listens, then its loader blocks opening the file until
  // we open the other end; closing it at once makes the load fail.
  test('GET /health and the API answer 503 until the model is loaded; a failed load exits non-zero', T, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slm-fifo-'));
    const fifo = path.join(dir, 'model.gguf');
    const mk = spawnSync('mkfifo', [fifo]);
    assert.equal(mk.status, 0, 'mkfifo');
    const srv = await startServer({ model: fifo, waitHealthy: false });
    try {
      const h = await httpGet(srv, '/health');
      assert.equal(h.status, 503, `GET /health while loading: ${h.status} ${h.text}`);
      for (const route of ['/v1/completions', '/v1/chat/completions']) {
        const r = await postJson(srv, route, route === '/v1/completions' ? { prompt: 'Hi', max_tokens: 2 } : { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
        assert.equal(r.status, 503, `${route} while loading: ${r.status} ${r.text}`);
        assertErrorBody(r.json, route);
      }
      const m = await metrics(srv);
      assert.equal(m.get('slm_slots_busy') ?? 0, 0);
      // Let the load fail: the server says why and exits with a non-zero status.
      fs.closeSync(fs.openSync(fifo, 'w'));
      const exit = await within(srv.exited, 10000);
      assert.notEqual(exit, 'timeout', 'slm serve kept running after its model failed to load');
      assert.ok(exit.code !== 0, `exit status ${JSON.stringify(exit)} after a failed load`);
      assert.match(srv.stderr, /error/i);
    } finally {
      await srv.stop('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
