// Fill-in-the-middle over HTTP: llama.cpp's POST /infill (as llama.vim and llama.vscode call
// it: input_prefix, input_suffix, input_extra, prompt, n_predict, whole or streamed) and the
// OpenAI completions API's `suffix` through the official openai client. The model is a
// random-weight tiny qwen2 with the Qwen2 vocabulary (slm synth), served with --override-kv
// naming Qwen2.5-Coder's FIM ids (151659..151664), which that vocabulary holds as padding.
// Its text is noise; what is checked is the protocol, the equalities between the endpoints,
// stop strings, truncation and the errors. A model without FIM tokens (stories260K) is refused
// clearly.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, sharedPath, missingShared, openaiClient, postJson, postSse, httpGet, cliPath } from './harness.mjs';
import { assertCompletion, assertErrorBody } from './shapes.mjs';

const VOCAB = 'fixtures/vocab/ggml-vocab-qwen2.gguf';
const STORIES = 'models/stories260K.gguf';
const T = { timeout: 60000 };
const KEY = 'infill-test-key';
const FIM = [
  'tokenizer.ggml.fim_pre_token_id=int:151659', 'tokenizer.ggml.fim_mid_token_id=int:151660',
  'tokenizer.ggml.fim_suf_token_id=int:151661', 'tokenizer.ggml.fim_pad_token_id=int:151662',
  'tokenizer.ggml.fim_rep_token_id=int:151663', 'tokenizer.ggml.fim_sep_token_id=int:151664',
].flatMap((kv) => ['--override-kv', kv]);

const prefix = 'import math\n\ndef area(r):\n    return ';
const suffix = '\n\nprint(area(2.0))\n';

function assertInfill(r, { nPredict } = {}) {
  assert.equal(typeof r.content, 'string');
  assert.equal(r.stop, true);
  assert.equal(r.index, 0);
  assert.equal(typeof r.model, 'string');
  for (const k of ['tokens_predicted', 'tokens_evaluated', 'tokens_cached']) assert.ok(Number.isInteger(r[k]) && r[k] >= 0, `${k}: ${r[k]}`);
  assert.ok(r.tokens_evaluated > 0);
  if (nPredict) assert.ok(r.tokens_predicted <= nPredict, `${r.tokens_predicted} > n_predict ${nPredict}`);
  assert.ok(['eos', 'limit', 'word'].includes(r.stop_type), r.stop_type);
  assert.equal(typeof r.truncated, 'boolean');
  assert.equal(r.has_new_line, r.content.includes('\n'));
  for (const k of ['prompt_n', 'predicted_n', 'prompt_ms', 'predicted_ms', 'cache_n']) assert.equal(typeof r.timings[k], 'number', k);
  assert.equal(r.timings.predicted_n, r.tokens_predicted);
  return r;
}

describe('POST /infill and completions with a suffix', { skip: missingShared(VOCAB) }, () => {
  let srv, small, client, dir;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slm-infill-'));
    const model = path.join(dir, 'tiny-qwen2.gguf');
    execFileSync(cliPath, ['synth', '--like', 'tiny-qwen2', '--vocab', sharedPath(VOCAB), '-o', model, '-q']);
    srv = await startServer({ model, args: [...FIM, '-c', '1024', '--parallel', '2', '--api-key', KEY] });
    small = await startServer({ model, args: [...FIM, '-c', '128', '--parallel', '1'] });
    client = await openaiClient(srv, { apiKey: KEY });
  });
  after(async () => {
    for (const s of [srv, small]) if (s) assert.deepEqual(await s.stop(), { code: 0, signal: null }, 'SIGTERM: exit status 0');
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const auth = { authorization: `Bearer ${KEY}` };
  const ask = { input_prefix: prefix, input_suffix: suffix, n_predict: 12, temperature: 0 };

  test('whole: llama.cpp\'s response; the same greedy text every time', T, async () => {
    const a = await postJson(srv, '/infill', ask, { headers: auth });
    assert.equal(a.status, 200, a.text);
    assertInfill(a.json, { nPredict: 12 });
    assert.equal(a.json.truncated, false);
    const b = await postJson(srv, '/infill', ask, { headers: auth });
    assert.equal(b.json.content, a.json.content);
    if (a.json.stop_type === 'limit') assert.equal(a.json.tokens_predicted, 12);
  });

  test('streamed: {"content", "stop": false} pieces, then the counts; no [DONE]; the same text', T, async () => {
    const whole = (await postJson(srv, '/infill', ask, { headers: auth })).json;
    const s = await postSse(srv, '/infill', { ...ask, stream: true }, { headers: auth });
    assert.equal(s.status, 200);
    assert.equal(s.done, false, 'llama.cpp\'s /infill stream has no [DONE]');
    assert.ok(s.ended);
    const last = s.chunks.at(-1);
    assertInfill(last, { nPredict: 12 });
    for (const c of s.chunks.slice(0, -1)) {
      assert.equal(c.stop, false);
      assert.equal(typeof c.content, 'string');
    }
    assert.equal(s.chunks.map((c) => c.content).join(''), whole.content);
    assert.equal(last.tokens_predicted, whole.tokens_predicted);
  });

  test('/v1/completions with suffix (openai client) fills the same middle', T, async () => {
    const whole = (await postJson(srv, '/infill', { ...ask, input_extra: [] }, { headers: auth })).json;
    const r = await client.completions.create({ model: 'x', prompt: prefix, suffix, max_tokens: 12, temperature: 0 });
    const { text, usage } = assertCompletion(r);
    assert.equal(text, whole.content);
    assert.equal(usage.prompt_tokens, whole.tokens_evaluated);
    assert.equal(usage.completion_tokens, whole.tokens_predicted);
    // An empty prompt is an insertion at the start of the file.
    const start = await client.completions.create({ model: 'x', prompt: '', suffix: 'print(1)\n', max_tokens: 3, temperature: 0 });
    assertCompletion(start);
  });

  test('input_extra and prompt (typed text) change the prompt; a stop string ends the fill', T, async () => {
    const plain = (await postJson(srv, '/infill', ask, { headers: auth })).json;
    const extra = (await postJson(srv, '/infill', {
      ...ask, input_extra: [{ filename: 'consts.py', text: 'PI = 3.14159\n' }, { text: 'TAU = 6.28\n' }],
    }, { headers: auth })).json;
    assertInfill(extra);
    assert.ok(extra.tokens_evaluated > plain.tokens_evaluated + 8, `${extra.tokens_evaluated} vs ${plain.tokens_evaluated}`);
    const typed = (await postJson(srv, '/infill', { ...ask, prompt: 'math.pi' }, { headers: auth })).json;
    assert.ok(typed.tokens_evaluated > plain.tokens_evaluated);
    // Stop at a piece of the greedy text: the fill ends before it and says which word.
    const long = (await postJson(srv, '/infill', { ...ask, n_predict: 16 }, { headers: auth })).json;
    assert.ok(long.content.length >= 4, JSON.stringify(long.content));
    const word = long.content.slice(Math.floor(long.content.length / 2)).slice(0, 3);
    const cut = (await postJson(srv, '/infill', { ...ask, n_predict: 16, stop: [word] }, { headers: auth })).json;
    assertInfill(cut);
    assert.equal(cut.stop_type, 'word');
    assert.equal(cut.stopping_word, word);
    assert.equal(cut.content, long.content.slice(0, long.content.indexOf(word)));
  });

  test('n_indent and t_max_predict_ms end a fill as llama.cpp does (a grammar writes the lines)', T, async () => {
    const grammar = 'root ::= "a = 1\\n    b = 2\\n  c = 3\\n    d = 4\\n"';
    const free = (await postJson(srv, '/infill', { ...ask, grammar, n_predict: 64 }, { headers: auth })).json;
    assertInfill(free);
    assert.equal(free.content, 'a = 1\n    b = 2\n  c = 3\n    d = 4\n');
    for (const stream of [false, true]) {
      const body = { ...ask, grammar, n_predict: 64, n_indent: 4, stream };
      const r = stream ? await postSse(srv, '/infill', body, { headers: auth }) : await postJson(srv, '/infill', body, { headers: auth });
      const last = stream ? r.chunks.at(-1) : r.json;
      const content = stream ? r.chunks.map((c) => c.content).join('') : r.json.content;
      assertInfill(last);
      assert.equal(content, 'a = 1\n    b = 2\n  ', `stream ${stream}`);
      assert.equal(last.stop_type, 'limit');
    }
    const timed = (await postJson(srv, '/infill', { ...ask, grammar, n_predict: 64, t_max_predict_ms: 0.001 }, { headers: auth })).json;
    assert.equal(timed.content, 'a = 1\n', 'stopped at the first line end after the time limit');
    assert.equal(timed.stop_type, 'limit');
  });

  test('a small context: the input is cut to fit, and the response says so', T, async () => {
    let longPrefix = '';
    for (let i = 0; i < 200; ++i) longPrefix += `x${i} = ${i}\n`;
    const r = await postJson(small, '/infill', { input_prefix: longPrefix, input_suffix: suffix, n_predict: 8, temperature: 0 });
    assert.equal(r.status, 200, r.text);
    assertInfill(r.json, { nPredict: 8 });
    assert.equal(r.json.truncated, true);
    assert.ok(r.json.tokens_evaluated <= 128 - 8, `${r.json.tokens_evaluated} prompt tokens in a context of 128`);
  });

  test('bad requests: 400s naming the field, 405, 401 without the key', T, async () => {
    const cases = [
      [{ input_suffix: 'x' }, 'input_prefix'],
      [{ input_prefix: 'x' }, 'input_suffix'],
      [{ input_prefix: 1, input_suffix: 'x' }, 'input_prefix'],
      [{ ...ask, input_extra: 'nope' }, 'input_extra'],
      [{ ...ask, input_extra: [{ filename: 'a.py' }] }, 'input_extra[0].text'],
      [{ ...ask, input_extra: [{ text: 'a', filename: 3 }] }, 'input_extra[0].filename'],
      [{ ...ask, prompt: ['x'] }, 'prompt'],
      [{ ...ask, n_predict: 0 }, 'n_predict'],
      [{ ...ask, n_probs: 3 }, 'n_probs'],
      [{ ...ask, temperature: 'hot' }, 'temperature'],
      [{ ...ask, n_indent: -1 }, 'n_indent'],
      [{ ...ask, t_max_predict_ms: 'soon' }, 't_max_predict_ms'],
    ];
    for (const [body, param] of cases) {
      const r = await postJson(srv, '/infill', body, { headers: auth });
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assertErrorBody(r.json);
      assert.equal(r.json.error.param, param, r.text);
    }
    const big = await postJson(small, '/infill', { ...ask, prompt: 'x '.repeat(400) });
    assert.equal(big.status, 400, big.text);
    assert.match(big.json.error.message, /do not fit in a context of 128 tokens/);
    const get = await httpGet(srv, '/infill', { headers: auth });
    assert.equal(get.status, 405);
    const noKey = await postJson(srv, '/infill', ask);
    assert.equal(noKey.status, 401);
  });
});

describe('a model without FIM tokens', { skip: missingShared(STORIES) }, () => {
  let srv;
  before(async () => { srv = await startServer({ model: sharedPath(STORIES) }); });
  after(async () => { if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null }); });

  test('/infill: 501 not_supported_error; /v1/completions suffix: 400 naming suffix', T, async () => {
    const r = await postJson(srv, '/infill', { input_prefix: 'a', input_suffix: 'b' });
    assert.equal(r.status, 501, r.text);
    assertErrorBody(r.json);
    assert.equal(r.json.error.type, 'not_supported_error');
    assert.match(r.json.error.message, /cannot fill in the middle/);
    const c = await postJson(srv, '/v1/completions', { prompt: 'Once', suffix: 'end.', max_tokens: 4 });
    assert.equal(c.status, 400, c.text);
    assert.equal(c.json.error.param, 'suffix');
    assert.match(c.json.error.message, /Qwen2.5-Coder/);
    // Without a suffix the same request is a plain completion.
    const plain = await postJson(srv, '/v1/completions', { prompt: 'Once', max_tokens: 4 });
    assert.equal(plain.status, 200, plain.text);
  });
});
