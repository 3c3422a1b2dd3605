// ollama's API on stories260K (with tests/data/stories260K-chat.jinja), as ollama clients call
// it: /api/chat and /api/generate streamed as newline-delimited JSON (the default) or whole,
// their text equal to the OpenAI routes' for the same request, format "json", /api/tags,
// /api/show, and {"error": ...} for what is refused.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sharedPath, dataPath, missingShared, postJson, httpGet } from './harness.mjs';

const STORIES = 'models/stories260K.gguf';
const T = { timeout: 60000 };

// POST and read newline-delimited JSON: the parsed lines.
async function postNdjson(srv, route, body) {
  const r = await fetch(`${srv.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json', connection: 'close' },
                                                 body: JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, type: r.headers.get('content-type'), lines: text.split('\n').filter((l) => l).map((l) => JSON.parse(l)) };
}

describe('ollama API', { skip: missingShared(STORIES) }, () => {
  let srv;
  before(async () => {
    srv = await startServer({ model: sharedPath(STORIES), args: ['--chat-template', dataPath('stories260K-chat.jinja')] });
  });
  after(async () => { if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null }); });

  const messages = [{ role: 'user', content: 'Once upon a time' }];
  const options = { num_predict: 24, temperature: 0 };

  test('/api/chat streams lines of message pieces, then done with the counts; the text is /v1/chat/completions\'s', T, async () => {
    const r = await postNdjson(srv, '/api/chat', { model: 'stories260K.gguf', messages, options });
    assert.equal(r.status, 200);
    assert.match(r.type, /application\/x-ndjson/);
    const last = r.lines.at(-1);
    assert.equal(last.done, true);
    assert.equal(last.done_reason, 'length');
    assert.equal(last.eval_count, 24);
    assert.ok(last.prompt_eval_count > 0 && last.total_duration > 0 && last.eval_duration > 0, JSON.stringify(last));
    for (const l of r.lines.slice(0, -1)) {
      assert.equal(l.done, false);
      assert.equal(l.message.role, 'assistant');
      assert.match(l.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    }
    const text = r.lines.map((l) => l.message.content).join('');
    const openai = await postJson(srv, '/v1/chat/completions', { messages, max_tokens: 24, temperature: 0 });
    assert.equal(text, openai.json.choices[0].message.content);
    const whole = await postJson(srv, '/api/chat', { messages, options, stream: false });
    assert.equal(whole.status, 200);
    assert.equal(whole.json.message.content, text);
    assert.equal(whole.json.done, true);
  });

  test('/api/generate: the chat template with system and prompt, or raw; the same text as the OpenAI routes', T, async () => {
    const templated = await postJson(srv, '/api/generate', { prompt: 'Once upon a time', system: 'Lily and the dog.', options, stream: false });
    const chat = await postJson(srv, '/v1/chat/completions', {
      messages: [{ role: 'system', content: 'Lily and the dog.' }, ...messages], max_tokens: 24, temperature: 0 });
    assert.equal(templated.json.response, chat.json.choices[0].message.content);
    const raw = await postNdjson(srv, '/api/generate', { prompt: 'Once upon a time', raw: true, options });
    const comp = await postJson(srv, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
    assert.equal(raw.lines.map((l) => l.response).join(''), comp.json.choices[0].text);
    assert.equal(raw.lines.at(-1).done, true);
  });

  test('format (a JSON schema, or "json") constrains the reply', T, async () => {
    const format = { type: 'object', properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer' } },
                     required: ['name', 'age'], additionalProperties: false };
    const r = await postJson(srv, '/api/chat', { messages, format, stream: false, options: { num_predict: 200, temperature: 0 } });
    assert.equal(r.status, 200, r.text);
    const v = JSON.parse(r.json.message.content);
    assert.equal(typeof v.name, 'string');
    assert.ok(Number.isInteger(v.age));
    const any = await postJson(srv, '/api/chat', { messages, format: 'json', stream: false, options: { num_predict: 4, temperature: 0 } });
    assert.equal(any.status, 200);
    assert.ok(any.json.message.content.trimStart().startsWith('{'), any.json.message.content);
  });

  test('/api/tags and /api/show describe the model', T, async () => {
    const tags = await httpGet(srv, '/api/tags');
    assert.equal(tags.json.models.length, 1);
    const m = tags.json.models[0];
    assert.equal(m.name, 'stories260K.gguf');
    assert.equal(m.details.format, 'gguf');
    assert.equal(m.details.family, 'llama');
    assert.match(m.details.parameter_size, /^\d+K$/);  // 260K-class model
    assert.ok(m.size > 1000000);
    const show = await postJson(srv, '/api/show', { model: 'stories260K.gguf' });
    assert.equal(show.status, 200);
    assert.match(show.json.template, /stories260K/);
    assert.equal(show.json.model_info['general.architecture'], 'llama');
    assert.deepEqual(show.json.capabilities, ['completion']);
    const missing = await postJson(srv, '/api/show', { model: 'llama3' });
    assert.equal(missing.status, 404);
    assert.match(missing.json.error, /not found/);
  });

  test('/api/version and /api/ps (what clients such as Open WebUI ask first), and llama.cpp\'s /apply-template', T, async () => {
    const v = await httpGet(srv, '/api/version');
    assert.equal(v.status, 200);
    assert.match(v.json.version, /^\d+\.\d+\.\d+$/);
    const ps = await httpGet(srv, '/api/ps');
    assert.equal(ps.json.models.length, 1);
    assert.equal(ps.json.models[0].name, 'stories260K.gguf');
    assert.equal(ps.json.models[0].size_vram, 0);
    assert.equal(ps.json.models[0].details.family, 'llama');
    // /apply-template renders what /v1/chat/completions would evaluate: the same token count.
    const chat = [{ role: 'system', content: 'Lily and the dog.' }, ...messages];
    const t = await postJson(srv, '/apply-template', { messages: chat });
    assert.equal(t.status, 200, t.text);
    assert.ok(t.json.prompt.includes('Lily and the dog.') && t.json.prompt.includes('Once upon a time'), t.json.prompt);
    const ids = await postJson(srv, '/tokenize', { content: t.json.prompt, add_special: false });
    const done = await postJson(srv, '/v1/chat/completions', { messages: chat, max_tokens: 1, temperature: 0 });
    assert.equal(ids.json.tokens.length, done.json.usage.prompt_tokens);
    const bad = await postJson(srv, '/apply-template', { messages: 5 });
    assert.equal(bad.status, 400);
  });

  test('refused requests answer {"error": ...} with a 400', T, async () => {
    const cases = [
      ['/api/chat', { messages, images: ['aGVsbG8='] }, /images/],
      ['/api/chat', { messages: [{ role: 'user', content: 'x', images: ['aGVsbG8='] }] }, /text only/],
      ['/api/chat', { messages, tools: [{ type: 'function', function: { name: 'a b' } }] }, /tools\[0\]/],
      ['/api/chat', { messages, options: { tfs_z: 0.9 } }, /options.tfs_z/],
      ['/api/chat', { messages, options: { mirostat: 3 } }, /mirostat/],
      ['/api/chat', { messages, options: { num_predict: 0 } }, /num_predict/],
      ['/api/chat', {}, /messages/],
      ['/api/generate', {}, /prompt/],
      ['/api/generate', { prompt: 'x', raw: true, system: 'y' }, /system/],
      ['/api/generate', { prompt: 'x', suffix: 'y' }, /cannot fill in the middle/],
      ['/api/chat', { messages, format: 5 }, /format/],
    ];
    for (const [route, body, re] of cases) {
      const r = await postJson(srv, route, body);
      assert.equal(r.status, 400, `${route} ${JSON.stringify(body)}: ${r.text}`);
      assert.equal(typeof r.json.error, 'string', r.text);
      assert.match(r.json.error, re);
    }
  });
});

describe('ollama API: tool calls under the Qwen2.5 template', { skip: missingShared(STORIES, 'fixtures/templates/Qwen-Qwen2.5-7B-Instruct.jinja') }, () => {
  let srv;
  before(async () => {
    srv = await startServer({ model: sharedPath(STORIES), args: ['--chat-template', sharedPath('fixtures/templates/Qwen-Qwen2.5-7B-Instruct.jinja')] });
  });
  after(async () => { if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null }); });

  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 20 } }, required: ['city'], additionalProperties: false } } }];
  const ask = { messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, tool_choice: 'required',
                parallel_tool_calls: false, options: { num_predict: 120, temperature: 0 } };

  test('calls come back as ollama writes them (arguments an object), whole and streamed', T, async () => {
    // A template that shows tools itself: /api/show says so, as ollama does.
    const show = await postJson(srv, '/api/show', {});
    assert.deepEqual(show.json.capabilities, ['completion', 'tools']);
    const whole = await postJson(srv, '/api/chat', { ...ask, stream: false });
    assert.equal(whole.status, 200, whole.text);
    const calls = whole.json.message.tool_calls;
    assert.ok(Array.isArray(calls) && calls.length >= 1, whole.text);
    assert.equal(calls[0].function.name, 'get_weather');
    assert.equal(typeof calls[0].function.arguments, 'object');
    assert.equal(typeof calls[0].function.arguments.city, 'string');
    const streamed = await postNdjson(srv, '/api/chat', ask);
    assert.equal(streamed.lines.length, 2);
    assert.deepEqual(streamed.lines[0].message.tool_calls, calls);
    assert.equal(streamed.lines[1].done, true);
    // The call and its result sent back (ollama's tool message has no call id): a reply.
    const next = await postJson(srv, '/api/chat', {
      messages: [...ask.messages, { role: 'assistant', content: '', tool_calls: calls }, { role: 'tool', content: '18 C, sunny' }],
      tools, stream: false, options: { num_predict: 8, temperature: 0 } });
    assert.equal(next.status, 200, next.text);
    assert.equal(next.json.done, true);
  });
});

describe("a llama-server command line: --chat-template NAME, -a, -np, --jinja, -cb, --metrics", { skip: missingShared(STORIES) }, () => {
  let srv;
  before(async () => {
    srv = await startServer({ model: sharedPath(STORIES),
                              args: ['--chat-template', 'chatml', '-a', 'my-model', '-np', '2', '--jinja', '-cb', '--metrics'] });
  });
  after(async () => { if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null }); });

  test('the built-in template renders, the alias names the model everywhere', T, async () => {
    const t = await postJson(srv, '/apply-template', { messages: [{ role: 'system', content: 'S' }, { role: 'user', content: 'U' }] });
    assert.equal(t.json.prompt, '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n');
    const models = await httpGet(srv, '/v1/models');
    assert.deepEqual(models.json.data.map((m) => m.id), ['my-model']);
    const reply = await postJson(srv, '/v1/chat/completions', { messages: [{ role: 'user', content: 'U' }], max_tokens: 4 });
    assert.equal(reply.json.model, 'my-model');
    const tags = await httpGet(srv, '/api/tags');
    assert.equal(tags.json.models[0].name, 'my-model');
    const props = await httpGet(srv, '/props');
    assert.equal(props.json.total_slots, 2);
    assert.match(props.json.chat_template, /im_start/);
  });
});
