// Speculative decoding in the server (`slm serve --draft-model`): stories260K with its Q8_0
// copy as the draft, three clients at once through the official openai client. Greedy
// completions equal llama.cpp's reference text, streamed ones the whole ones, sampled ones
// the server without a draft; /metrics counts proposals and kept ones; a draft with another
// vocabulary stops the server at start with a message saying so.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, sharedPath, dataPath, missingShared, openaiClient, metrics, cliPath } from './harness.mjs';
import { assertCompletion, drain } from './shapes.mjs';

const STORIES = 'models/stories260K.gguf';
const GREEDY = 'models/stories260K.greedy.json';
const OTHER = 'fixtures/logits/llama-L2-E64-F32.gguf';
const T = { timeout: 60000 };

describe('slm serve --draft-model', { skip: missingShared(STORIES, GREEDY) }, () => {
  let spec, plain, client, plainClient, dir;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slm-spec-'));
    const draft = path.join(dir, 'stories-q8_0.gguf');
    execFileSync(cliPath, ['quantize', sharedPath(STORIES), draft, 'Q8_0'], { stdio: 'ignore' });
    const common = ['--chat-template', dataPath('stories260K-chat.jinja'), '--kv-type', 'f32', '--parallel', '3'];
    spec = await startServer({ model: sharedPath(STORIES), args: [...common, '--draft-model', draft, '--draft-p-min', '0.3'] });
    plain = await startServer({ model: sharedPath(STORIES), args: common });
    client = await openaiClient(spec);
    plainClient = await openaiClient(plain);
  });
  after(async () => {
    for (const s of [spec, plain]) if (s) assert.deepEqual(await s.stop(), { code: 0, signal: null });
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('greedy completions, three at once, equal llama.cpp\'s text; the draft\'s proposals are counted', T, async () => {
    assert.match(spec.stderr, /draft model stories-q8_0\.gguf: up to 7 tokens/);
    const ref = JSON.parse(fs.readFileSync(sharedPath(GREEDY), 'utf8'));
    const before = await metrics(spec);
    const results = await Promise.all(ref.cases.map((c) => client.completions.create({
      model: 'x', prompt: c.prompt, max_tokens: c.n_predict, temperature: 0,
    })));
    results.forEach((r, i) => assert.equal(assertCompletion(r).text, ref.cases[i].text, ref.cases[i].prompt));
    const after = await metrics(spec);
    const delta = (name) => after.get(name) - before.get(name);
    const drafted = delta('slm_draft_tokens_total'), accepted = delta('slm_draft_tokens_accepted_total');
    const generated = delta('slm_generated_tokens_total'), steps = delta('slm_batch_steps_total');
    assert.ok(drafted > 0 && accepted > 0 && accepted <= drafted, `drafted ${drafted}, accepted ${accepted}`);
    assert.ok(steps < generated, `${steps} steps for ${generated} tokens`);
  });

  test('streamed chat equals the whole reply; sampled replies equal the server without a draft', T, async () => {
    const ask = { model: 'x', messages: [{ role: 'user', content: 'Tell me a story about a cat.' }], max_tokens: 80 };
    const whole = await client.chat.completions.create({ ...ask, temperature: 0 });
    const chunks = await drain(await client.chat.completions.create({ ...ask, temperature: 0, stream: true }));
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), whole.choices[0].message.content);
    for (const seed of [1, 2, 3]) {
      const body = { ...ask, temperature: 1, seed, stop: ['dog'] };
      const [a, b] = await Promise.all([client.chat.completions.create(body), plainClient.chat.completions.create(body)]);
      assert.equal(a.choices[0].message.content, b.choices[0].message.content, `seed ${seed}`);
      assert.equal(a.choices[0].finish_reason, b.choices[0].finish_reason);
      assert.equal(a.usage.completion_tokens, b.usage.completion_tokens);
    }
  });
});

describe('slm serve --lookup (prompt lookup decoding)', { skip: missingShared(STORIES, GREEDY) }, () => {
  let srv;
  before(async () => {
    srv = await startServer({ model: sharedPath(STORIES), args: ['--kv-type', 'f32', '--parallel', '3', '--lookup'] });
  });
  after(async () => { if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null }); });

  test('greedy completions equal llama.cpp\'s text; proposals come from the requests\' own text', T, async () => {
    assert.match(srv.stderr, /prompt lookup: up to 7 tokens/);
    const ref = JSON.parse(fs.readFileSync(sharedPath(GREEDY), 'utf8'));
    const client = await openaiClient(srv);
    const results = await Promise.all(ref.cases.map((c) => client.completions.create({
      model: 'x', prompt: c.prompt, max_tokens: c.n_predict, temperature: 0,
    })));
    results.forEach((r, i) => assert.equal(assertCompletion(r).text, ref.cases[i].text, ref.cases[i].prompt));
    const m = await metrics(srv);
    assert.ok(m.get('slm_draft_tokens_accepted_total') > 0, m.text);
    assert.ok(m.get('slm_draft_tokens_accepted_total') < m.get('slm_draft_tokens_total'));
  });
});

describe('a draft with another vocabulary', { skip: missingShared(STORIES, OTHER) }, () => {
  test('the server stops at start and says why', T, async () => {
    const r = spawnSync(cliPath, ['serve', '-m', sharedPath(STORIES), '--port', '0', '--draft-model', sharedPath(OTHER)],
                        { encoding: 'utf8', timeout: 30000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /draft model's vocabulary has 32000 tokens but the target's has 512/);
  });
});
