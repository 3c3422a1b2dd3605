// llama-server's --context-shift on stories260K with a 48-token context: a request may ask for
// more tokens than the context holds and gets them all (the text after its n_keep tokens is
// halved each time the context fills; /metrics counts the shifts), through the OpenAI client,
// llama.cpp's /completion and ollama's /api/generate (options.num_keep); the same greedy text
// as `slm run --context-shift`. Without the option such a request is a 400.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, sharedPath, missingShared, postJson, httpGet, openaiClient, cliPath } from './harness.mjs';
import { assertErrorBody } from './shapes.mjs';

const STORIES = 'models/stories260K.gguf';
const T = { timeout: 60000 };
const PROMPT = 'Once upon a time';

describe('--context-shift', { skip: missingShared(STORIES) }, () => {
  let srv, plain;
  before(async () => {
    srv = await startServer({ model: sharedPath(STORIES), args: ['-c', '48', '--parallel', '2', '--context-shift'] });
    plain = await startServer({ model: sharedPath(STORIES), args: ['-c', '48', '--parallel', '1'] });
  });
  after(async () => {
    if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null });
    if (plain) assert.deepEqual(await plain.stop(), { code: 0, signal: null });
  });

  const shifts = async () => {
    const m = (await httpGet(srv, '/metrics')).text.match(/^slm_context_shifts_total (\d+)$/m);
    assert.ok(m, 'slm_context_shifts_total in /metrics');
    return Number(m[1]);
  };

  test('/completion: every token asked for, the text slm run --context-shift gives', T, async () => {
    const before = await shifts();
    const r = await postJson(srv, '/completion', { prompt: PROMPT, n_predict: 150, temperature: 0, n_keep: -1, ignore_eos: true });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.tokens_predicted, 150);
    assert.equal(r.json.stop_type, 'limit');
    assert.ok(await shifts() >= before + 4, 'the context filled at least 4 times');
    const run = execFileSync(cliPath, ['run', '-m', sharedPath(STORIES), '-p', PROMPT, '-n', '150', '--temp', '0', '-c', '48',
                                       '--context-shift', '--keep', '-1', '--ignore-eos'], { stdio: ['ignore', 'pipe', 'ignore'] });
    assert.equal(r.json.content, run.toString());
  });

  test('OpenAI client: max_tokens past the context, finish_reason length', T, async () => {
    const client = await openaiClient(srv);
    const c = await client.completions.create({ model: 'stories', prompt: PROMPT, max_tokens: 120, temperature: 0 });
    assert.equal(c.choices[0].finish_reason, 'length');
    assert.equal(c.usage.completion_tokens, 120);
  });

  test('ollama: options.num_keep and num_predict', T, async () => {
    const r = await postJson(srv, '/api/generate', { model: 'stories', prompt: PROMPT, raw: true, stream: false,
                                                     options: { num_predict: 100, num_keep: 2, temperature: 0 } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.eval_count, 100);
    assert.equal(r.json.done_reason, 'length');
  });

  test('a bad n_keep names the field', T, async () => {
    const r = await postJson(srv, '/completion', { prompt: PROMPT, n_predict: 10, n_keep: 'all' });
    assert.equal(r.status, 400, r.text);
    assertErrorBody(r.json);
    assert.equal(r.json.error.param, 'n_keep');
  });

  test('without --context-shift, more than the context is a 400', T, async () => {
    const r = await postJson(plain, '/v1/completions', { prompt: PROMPT, max_tokens: 120 });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.code, 'context_length_exceeded');
  });
});
