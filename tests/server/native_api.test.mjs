// llama.cpp's own server endpoints beside the OpenAI ones, on stories260K: POST /completion
// (a string prompt with special-token text parsed, or token ids; whole and streamed, its
// greedy text equal to llama.cpp's reference), POST /tokenize and /detokenize, their errors,
// and the API key on all of them.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startServer, sharedPath, missingShared, postJson, postSse, httpGet, slmRun } from './harness.mjs';
import { assertErrorBody } from './shapes.mjs';

const STORIES = 'models/stories260K.gguf';
const GREEDY = 'models/stories260K.greedy.json';
const T = { timeout: 60000 };
const KEY = 'native-key';
const auth = { authorization: `Bearer ${KEY}` };

describe('/completion, /tokenize, /detokenize', { skip: missingShared(STORIES, GREEDY) }, () => {
  let srv, ref;
  before(async () => {
    srv = await startServer({ model: sharedPath(STORIES), args: ['--kv-type', 'f32', '--api-key', KEY] });
    ref = JSON.parse(fs.readFileSync(sharedPath(GREEDY), 'utf8'));
  });
  after(async () => { if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null }); });

  test('/completion: greedy text equals llama.cpp\'s, from a string or from token ids', T, async () => {
    for (const c of ref.cases) {
      for (const prompt of [c.prompt, c.prompt_tokens]) {
        const r = await postJson(srv, '/completion', { prompt, n_predict: c.n_predict, temperature: 0 }, { headers: auth });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.content, c.text, JSON.stringify(prompt));
        assert.equal(r.json.stop, true);
        assert.equal(r.json.tokens_evaluated, c.prompt_tokens.length);
        assert.ok(r.json.tokens_predicted <= c.n_predict);
        assert.ok(['eos', 'limit'].includes(r.json.stop_type));
        assert.equal(r.json.timings.predicted_n, r.json.tokens_predicted);
        assert.ok(r.json.timings.prompt_ms > 0 && r.json.timings.predicted_ms > 0, JSON.stringify(r.json.timings));
      }
    }
  });

  test('/completion streamed: the pieces make the whole text; a stop word is reported', T, async () => {
    const c = ref.cases[0];
    const s = await postSse(srv, '/completion', { prompt: c.prompt, n_predict: c.n_predict, temperature: 0, stream: true }, { headers: auth });
    assert.equal(s.status, 200);
    assert.equal(s.done, false);
    assert.equal(s.chunks.map((x) => x.content).join(''), c.text);
    assert.equal(s.chunks.at(-1).stop, true);
    const word = c.text.split(' ')[6];
    const w = await postJson(srv, '/completion', { prompt: c.prompt, n_predict: c.n_predict, temperature: 0, stop: [word] }, { headers: auth });
    assert.equal(w.json.stop_type, 'word');
    assert.equal(w.json.stopping_word, word);
    assert.equal(w.json.content, c.text.slice(0, c.text.indexOf(word)));
  });

  test('special-token text: parsed by /completion and /tokenize (as llama.cpp), not with parse_special false', T, async () => {
    const parsed = await postJson(srv, '/tokenize', { content: '<s>Once upon' }, { headers: auth });
    assert.equal(parsed.json.tokens[0], 1, JSON.stringify(parsed.json));
    const plain = await postJson(srv, '/tokenize', { content: '<s>Once upon', parse_special: false }, { headers: auth });
    assert.ok(plain.json.tokens.length > parsed.json.tokens.length + 2 && !plain.json.tokens.includes(1), JSON.stringify(plain.json));
    const bos = await postJson(srv, '/tokenize', { content: 'Once upon', add_special: true }, { headers: auth });
    assert.deepEqual(bos.json, { tokens: [1, 403, 407] });
    const pieces = await postJson(srv, '/tokenize', { content: 'Once upon', with_pieces: true }, { headers: auth });
    assert.deepEqual(pieces.json, { tokens: [{ id: 403, piece: ' Once' }, { id: 407, piece: ' upon' }] });
    // The same prompt with and without a leading "<s>" text: BOS either way, one token more not.
    const a = await postJson(srv, '/completion', { prompt: 'Once upon a time', n_predict: 4, temperature: 0 }, { headers: auth });
    const b = await postJson(srv, '/completion', { prompt: '<s>Once upon a time', n_predict: 4, temperature: 0 }, { headers: auth });
    assert.equal(b.json.tokens_evaluated, a.json.tokens_evaluated + 1);
  });

  test('/detokenize: the text of token ids, special tokens shown', T, async () => {
    const r = await postJson(srv, '/detokenize', { tokens: ref.cases[0].prompt_tokens }, { headers: auth });
    assert.equal(r.status, 200);
    assert.equal(r.json.content, `<s> ${ref.cases[0].prompt}`);
  });

  test('logit_bias (OpenAI\'s object, llama.cpp\'s pairs, text) equals slm run --logit-bias', T, async () => {
    const base = { model: 'x', prompt: 'Once upon a time', max_tokens: 24, temperature: 0 };
    const plain = (await postJson(srv, '/v1/completions', base, { headers: auth })).json.choices[0].text;
    // 432 is the greedy first token (","): banned three ways, the same text as the CLI's.
    const cli = await slmRun(['-m', sharedPath(STORIES), '-p', 'Once upon a time', '-n', '24', '--temp', '0',
                              '--kv-type', 'f32', '--logit-bias', '432-inf']);
    assert.notEqual(cli, plain);
    for (const logit_bias of [{ 432: -100 }, [[432, false]]]) {
      const r = await postJson(srv, '/v1/completions', { ...base, logit_bias }, { headers: auth });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.choices[0].text, cli, JSON.stringify(logit_bias));
    }
    // A text biases each of its tokens (as /tokenize splits it, without BOS).
    const ids = (await postJson(srv, '/tokenize', { content: ' there was', parse_special: false }, { headers: auth })).json.tokens;
    assert.ok(ids.length >= 1);
    const byText = await postJson(srv, '/v1/completions', { ...base, logit_bias: [[' there was', -100]] }, { headers: auth });
    const byIds = await postJson(srv, '/v1/completions', { ...base, logit_bias: Object.fromEntries(ids.map((i) => [i, -100])) }, { headers: auth });
    assert.equal(byText.json.choices[0].text, byIds.json.choices[0].text);
    assert.notEqual(byText.json.choices[0].text, plain);
    // A strong positive bias makes a token the pick (and /completion takes it too).
    const a = await postJson(srv, '/completion', { prompt: 'Once upon a time', n_predict: 4, temperature: 0, logit_bias: [[261, 100]] }, { headers: auth });
    assert.equal(a.json.content, ' a a a a');
    for (const [logit_bias, re] of [[{ x: 1 }, /keys must be token ids/], [{ 432: 101 }, /-100 to 100/],
                                   [[[432]], /entries must be/], [{ 9999: 1 }, /outside this model's vocabulary/], ['no', /must be an object/]]) {
      const r = await postJson(srv, '/v1/completions', { ...base, logit_bias }, { headers: auth });
      assert.equal(r.status, 400, `${JSON.stringify(logit_bias)}: ${r.text}`);
      assert.equal(r.json.error.param, 'logit_bias');
      assert.match(r.json.error.message, re);
    }
  });

  test('GET /props: context, slots, chat template, what the model can do', T, async () => {
    const r = await httpGet(srv, '/props');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.default_generation_settings.n_ctx, 2048);  // stories260K's training context
    assert.equal(r.json.default_generation_settings.params.temperature, 0.8);
    assert.equal(r.json.default_generation_settings.params.n_keep, 0);  // what a request without n_keep keeps
    assert.equal(r.json.total_slots, 4);
    assert.equal(r.json.model_path, sharedPath(STORIES));
    assert.equal(r.json.chat_template, '');  // stories260K has none
    assert.equal(r.json.bos_token, '<s>');
    assert.equal(r.json.eos_token, '</s>');
    assert.equal(r.json.infill, false);
    assert.equal(r.json.speculative, false);
  });

  test('GET /slots: each slot, behind the API key; a finished request leaves its tokens cached', T, async () => {
    assert.equal((await httpGet(srv, '/slots')).status, 401);
    const done = await postJson(srv, '/completion', { prompt: 'Once upon a time', n_predict: 12, temperature: 0 }, { headers: auth });
    assert.equal(done.status, 200, done.text);
    const r = await httpGet(srv, '/slots', { headers: auth });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.length, 4);
    assert.deepEqual(r.json.map((s) => s.id), [0, 1, 2, 3]);
    for (const s of r.json) {
      assert.equal(s.n_ctx, 2048);
      assert.equal(s.is_processing, false);
      assert.equal(s.next_token.has_next_token, false);
    }
    // The slot that served it holds the prompt and the reply (up to the last token, which the
    // cache never needed to evaluate).
    const held = Math.max(...r.json.map((s) => s.n_past));
    assert.ok(held >= done.json.tokens_evaluated + done.json.tokens_predicted - 1, JSON.stringify(r.json));
  });

  test('bad requests: 400s naming the field; GET is 405; no key is 401', T, async () => {
    const cases = [
      ['/completion', {}, 'prompt'],
      ['/completion', { prompt: [] }, 'prompt'],
      ['/completion', { prompt: [1, 'x'] }, 'prompt'],
      ['/completion', { prompt: [1, 100000] }, 'prompt'],
      ['/completion', { prompt: 'x', n_predict: 0 }, 'n_predict'],
      ['/completion', { prompt: 'x', n_probs: 2 }, 'n_probs'],
      ['/tokenize', {}, 'content'],
      ['/tokenize', { content: 'x', with_pieces: 'yes' }, 'with_pieces'],
      ['/detokenize', { tokens: 'x' }, 'tokens'],
      ['/detokenize', { tokens: [1, 512] }, 'tokens'],
    ];
    for (const [route, body, param] of cases) {
      const r = await postJson(srv, route, body, { headers: auth });
      assert.equal(r.status, 400, `${route} ${JSON.stringify(body)}: ${r.text}`);
      assertErrorBody(r.json);
      assert.equal(r.json.error.param, param, r.text);
    }
    for (const route of ['/completion', '/tokenize', '/detokenize']) {
      assert.equal((await httpGet(srv, route, { headers: auth })).status, 405, route);
      assert.equal((await postJson(srv, route, { prompt: 'x', content: 'x', tokens: [1] })).status, 401, route);
    }
  });
});
