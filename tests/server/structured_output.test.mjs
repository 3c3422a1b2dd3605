// Constrained output through the API, with the official openai client: response_format
// json_schema and json_object (whole, streamed, and the openai client's own parse helper on
// /v1/chat/completions), llama.cpp's "grammar" and "json_schema" extensions on /v1/completions,
// two constrained requests at once beside a free one, and clear 400s for what cannot be
// enforced.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sharedPath, dataPath, missingShared, openaiClient, postJson, postSse } from './harness.mjs';
import { assertChatCompletion, assertErrorBody, drain } from './shapes.mjs';

const STORIES = 'models/stories260K.gguf';
const T = { timeout: 60000 };

const person = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 30 },
    age: { type: 'integer' },
    mood: { enum: ['happy', 'sad', 'sleepy'] },
    friends: { type: 'array', items: { type: 'string', maxLength: 10 }, maxItems: 2 },
  },
  required: ['name', 'age', 'mood'],
  additionalProperties: false,
};

function assertPerson(text) {
  let v;
  assert.doesNotThrow(() => { v = JSON.parse(text); }, `not JSON: ${JSON.stringify(text)}`);
  assert.equal(typeof v, 'object');
  assert.ok(v !== null && !Array.isArray(v), text);
  assert.equal(typeof v.name, 'string', text);
  assert.ok([...v.name].length <= 30, text);
  assert.ok(Number.isInteger(v.age), text);
  assert.ok(['happy', 'sad', 'sleepy'].includes(v.mood), text);
  for (const k of Object.keys(v)) assert.ok(['name', 'age', 'mood', 'friends'].includes(k), `unexpected key ${k}`);
  if ('friends' in v) {
    assert.ok(Array.isArray(v.friends) && v.friends.length <= 2, text);
    for (const f of v.friends) assert.equal(typeof f, 'string');
  }
  return v;
}

describe('structured output on stories260K', { skip: missingShared(STORIES) }, () => {
  let srv, client;

  before(async () => {
    srv = await startServer({
      model: sharedPath(STORIES),
      args: ['--chat-template', dataPath('stories260K-chat.jinja'), '--parallel', '3'],
    });
    client = await openaiClient(srv);
  });
  after(async () => {
    if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null }, 'SIGTERM: exit status 0');
  });

  const ask = { model: 'x', messages: [{ role: 'user', content: 'Tell me about Lily.' }], max_tokens: 400 };

  test('response_format json_schema: the reply is an instance of the schema (greedy and sampled)', T, async () => {
    for (const extra of [{ temperature: 0 }, { temperature: 1, seed: 11 }, { temperature: 1, seed: 12 }]) {
      const r = await client.chat.completions.create({
        ...ask, ...extra, response_format: { type: 'json_schema', json_schema: { name: 'person', schema: person, strict: true } },
      });
      const c = assertChatCompletion(r);
      assert.equal(c.finish, 'stop', `the grammar ended the reply, not max_tokens: ${JSON.stringify(c.content)}`);
      assertPerson(c.content);
    }
  });

  test('response_format json_schema streamed: the deltas join into the same JSON as the whole reply', T, async () => {
    const req = { ...ask, temperature: 0, response_format: { type: 'json_schema', json_schema: { name: 'person', schema: person } } };
    const whole = (await client.chat.completions.create(req)).choices[0].message.content;
    const chunks = await drain(await client.chat.completions.create({ ...req, stream: true }));
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, whole);
    assertPerson(text);
  });

  test('the openai client\'s parse() helper reads the reply as the schema\'s object', T, async () => {
    const r = await client.beta.chat.completions.parse({
      ...ask, temperature: 0, response_format: { type: 'json_schema', json_schema: { name: 'person', schema: person, strict: true } },
    });
    const parsed = r.choices[0].message.parsed;
    assert.ok(parsed && typeof parsed === 'object', JSON.stringify(r.choices[0].message));
    assert.deepEqual(parsed, assertPerson(r.choices[0].message.content));
  });

  test('response_format json_object: a JSON object', T, async () => {
    const r = await client.chat.completions.create({ ...ask, max_tokens: 600, temperature: 0, response_format: { type: 'json_object' } });
    const c = assertChatCompletion(r);
    if (c.finish === 'stop') {
      const v = JSON.parse(c.content);
      assert.ok(v !== null && typeof v === 'object' && !Array.isArray(v), c.content);
    } else {
      assert.ok(c.content.startsWith('{'), c.content);  // cut at max_tokens inside a value
    }
    // type "text" is the default: free text.
    const t = await client.chat.completions.create({ ...ask, max_tokens: 16, temperature: 0, response_format: { type: 'text' } });
    const free = await client.chat.completions.create({ ...ask, max_tokens: 16, temperature: 0 });
    assert.equal(t.choices[0].message.content, free.choices[0].message.content);
  });

  test('completions: llama.cpp\'s "grammar" and "json_schema" fields', T, async () => {
    const g = await postJson(srv, '/v1/completions', {
      prompt: 'Was the dog happy?', max_tokens: 20, temperature: 0, grammar: 'root ::= ("yes" | "no") "."',
    });
    assert.equal(g.status, 200, g.text);
    assert.ok(['yes.', 'no.'].includes(g.json.choices[0].text), g.json.choices[0].text);
    assert.equal(g.json.choices[0].finish_reason, 'stop');
    const s = await postJson(srv, '/v1/completions', {
      prompt: 'Once upon a time', max_tokens: 400, temperature: 0, json_schema: person,
    });
    assert.equal(s.status, 200, s.text);
    assertPerson(s.json.choices[0].text);
  });

  test('constrained and free requests at once each get their own output', T, async () => {
    const fmt = { type: 'json_schema', json_schema: { name: 'person', schema: person } };
    const [a, b, free] = await Promise.all([
      client.chat.completions.create({ ...ask, temperature: 1, seed: 3, response_format: fmt }),
      client.chat.completions.create({ ...ask, messages: [{ role: 'user', content: 'Ben had a dog.' }], temperature: 0, response_format: fmt }),
      client.chat.completions.create({ ...ask, max_tokens: 40, temperature: 0 }),
    ]);
    assertPerson(a.choices[0].message.content);
    assertPerson(b.choices[0].message.content);
    assert.ok(!free.choices[0].message.content.trimStart().startsWith('{'), free.choices[0].message.content);
  });

  test('what cannot be enforced is a 400 naming the field', T, async () => {
    const cases = [
      [{ response_format: { type: 'xml' } }, 'response_format.type', /unknown 'response_format.type'/],
      [{ response_format: 'json' }, 'response_format', /must be an object/],
      [{ response_format: { type: 'json_schema' } }, 'response_format.json_schema', /required/],
      [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: '^a$' } } } },
        'response_format.json_schema.schema', /pattern/],
      [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { $ref: 'https://example.com/s.json' } } } },
        'response_format.json_schema.schema', /\$ref/],
      [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: { type: 'string' } }, required: ['b'] } } } },
        'response_format.json_schema.schema', /required/],
      [{ grammar: 'root ::= item' }, 'grammar', /never defined/],
      [{ grammar: 'root ::= root "a"' }, 'grammar', /left-recursive/],
      [{ grammar: 42 }, 'grammar', /GBNF string/],
      [{ grammar: 'root ::= "a"', response_format: { type: 'json_object' } }, 'response_format', /at most one/],
    ];
    for (const [extra, param, message] of cases) {
      const r = await postJson(srv, '/v1/chat/completions', { ...ask, ...extra });
      assert.equal(r.status, 400, `${JSON.stringify(extra)}: ${r.text}`);
      assertErrorBody(r.json);
      assert.equal(r.json.error.param, param, `${JSON.stringify(extra)}: ${r.text}`);
      assert.match(r.json.error.message, message, `${JSON.stringify(extra)}: ${r.text}`);
    }
    // The server is still fine.
    assertChatCompletion(await client.chat.completions.create({ ...ask, max_tokens: 4 }));
  });

  test('a grammar found too ambiguous only while generating: 400 invalid_grammar (streamed: the error event)', T, async () => {
    // Every character doubles the closers that may follow: past 4,096 ways after a dozen.
    const grammar = 'root ::= x\nx ::= [^\\x00] x "1" | [^\\x00] x "2" | "."';
    const body = { model: 'x', prompt: 'Once upon a time', max_tokens: 60, grammar };
    const r = await postJson(srv, '/v1/completions', body);
    assert.equal(r.status, 400, r.text);
    assertErrorBody(r.json);
    assert.equal(r.json.error.code, 'invalid_grammar');
    assert.equal(r.json.error.param, 'grammar');
    assert.match(r.json.error.message, /too ambiguous/);
    const s = await postSse(srv, '/v1/completions', { ...body, stream: true });
    assert.equal(s.status, 200);
    const err = s.chunks.find((c) => c.error);
    assert.ok(err, JSON.stringify(s.chunks.slice(-2)));
    assert.equal(err.error.code, 'invalid_grammar');
    assert.ok(s.done);
  });
});
