// Tool calls through the API with the official openai client, on stories260K under the real
// chat templates of Qwen2.5 (Hermes <tool_call> blocks), Llama 3.2 (a JSON reply) and Gemma 2
// (no tool support of its own: slm's generic JSON format): tool_choice required / named /
// auto / none, a whole round trip with the tool's result sent back, streaming, and 400s for
// malformed tools. A 260K-parameter story model makes poor choices, so the tests check what
// the server guarantees (calls that parse and fit the schema, the API's shapes), not wisdom.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sharedPath, missingShared, openaiClient, postJson } from './harness.mjs';
import { assertErrorBody, drain } from './shapes.mjs';

const STORIES = 'models/stories260K.gguf';
const TEMPLATES = {
  qwen: 'fixtures/templates/Qwen-Qwen2.5-7B-Instruct.jinja',
  llama: 'fixtures/templates/meta-llama-Llama-3.2-3B-Instruct.jinja',
  gemma: 'fixtures/templates/google-gemma-2-2b-it.jinja',
};
const T = { timeout: 60000 };

const tools = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'The weather in a city',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string', maxLength: 20 }, unit: { enum: ['celsius', 'fahrenheit'] } },
        required: ['city'],
        additionalProperties: false,
      },
    },
  },
  {
    type: 'function',
    function: {
      name: 'add',
      description: 'Adds two integers',
      parameters: { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' } }, required: ['a', 'b'] },
    },
  },
];

// A call the server returned: the API's shape, a known function, arguments that fit its schema.
function assertCall(call, only) {
  assert.match(call.id, /^call_[A-Za-z0-9]{24}$/);
  assert.equal(call.type, 'function');
  const fn = call.function;
  if (only) assert.equal(fn.name, only);
  assert.equal(typeof fn.arguments, 'string');
  const args = JSON.parse(fn.arguments);
  if (fn.name === 'get_weather') {
    assert.equal(typeof args.city, 'string', fn.arguments);
    assert.ok([...args.city].length <= 20, fn.arguments);
    if ('unit' in args) assert.ok(['celsius', 'fahrenheit'].includes(args.unit), fn.arguments);
    for (const k of Object.keys(args)) assert.ok(['city', 'unit'].includes(k), fn.arguments);
  } else {
    assert.equal(fn.name, 'add');
    assert.ok(Number.isInteger(args.a) && Number.isInteger(args.b), fn.arguments);
  }
  return args;
}

const ask = (content) => [{ role: 'user', content }];

for (const [family, template] of Object.entries(TEMPLATES)) {
  describe(`tool calls under the ${family} template`, { skip: missingShared(STORIES, template) }, () => {
    let srv, client;
    before(async () => {
      srv = await startServer({ model: sharedPath(STORIES), args: ['--chat-template', sharedPath(template), '--parallel', '2'] });
      client = await openaiClient(srv);
    });
    after(async () => {
      if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null }, 'SIGTERM: exit status 0');
    });

    test('tool_choice required: a call that parses and fits the schema, finish_reason tool_calls', T, async () => {
      for (const extra of [{ temperature: 0 }, { temperature: 1, seed: 4 }]) {
        const r = await client.chat.completions.create({
          model: 'x', messages: ask('What is the weather in Paris?'), tools, tool_choice: 'required',
          parallel_tool_calls: false, max_tokens: 200, ...extra,
        });
        const choice = r.choices[0];
        assert.equal(choice.finish_reason, 'tool_calls', JSON.stringify(choice));
        assert.equal(choice.message.role, 'assistant');
        assert.equal(choice.message.tool_calls.length, 1);
        assertCall(choice.message.tool_calls[0]);
      }
    });

    test('tool_choice naming a function: that function is called', T, async () => {
      const r = await client.chat.completions.create({
        model: 'x', messages: ask('What is 2 plus 3?'), tools, tool_choice: { type: 'function', function: { name: 'add' } },
        parallel_tool_calls: false, max_tokens: 200, temperature: 0,
      });
      assert.equal(r.choices[0].finish_reason, 'tool_calls');
      assertCall(r.choices[0].message.tool_calls[0], 'add');
    });

    test('a round trip: the call, the tool\'s result, and the model goes on', T, async () => {
      const messages = ask('What is the weather in Paris?');
      const first = await client.chat.completions.create({
        model: 'x', messages, tools, tool_choice: 'required', parallel_tool_calls: false, max_tokens: 200, temperature: 0,
      });
      const call = first.choices[0].message.tool_calls[0];
      assertCall(call);
      messages.push(first.choices[0].message);  // the assistant's message as the API gave it
      messages.push({ role: 'tool', tool_call_id: call.id, content: JSON.stringify({ temperature: 21, sky: 'clear' }) });
      const second = await client.chat.completions.create({
        model: 'x', messages, tools, tool_choice: 'none', max_tokens: 24, temperature: 0,
      });
      assert.equal(second.choices[0].finish_reason, 'length');
      assert.equal(typeof second.choices[0].message.content, 'string');
      assert.ok(second.choices[0].message.content.length > 0);
      assert.equal(second.choices[0].message.tool_calls, undefined);
      const alone = await client.chat.completions.create({
        model: 'x', messages: ask('What is the weather in Paris?'), tools, tool_choice: 'none', max_tokens: 1, temperature: 0,
      });
      assert.ok(second.usage.prompt_tokens > alone.usage.prompt_tokens + 10, 'the call and its result are in the prompt');
    });

    test('streamed: the call arrives as a tool_calls delta (the client\'s stream helper reads it)', T, async () => {
      const req = { model: 'x', messages: ask('Add 4 and 5.'), tools, tool_choice: 'required', parallel_tool_calls: false, max_tokens: 200, temperature: 0 };
      const whole = await client.chat.completions.create(req);
      const chunks = await drain(await client.chat.completions.create({ ...req, stream: true }));
      const deltas = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
      assert.equal(deltas.length, 1);
      assert.equal(deltas[0].index, 0);
      assert.equal(deltas[0].function.name, whole.choices[0].message.tool_calls[0].function.name);
      assert.equal(deltas[0].function.arguments, whole.choices[0].message.tool_calls[0].function.arguments);
      assert.equal(chunks.at(-1).choices[0].finish_reason, 'tool_calls');
      const runner = client.beta.chat.completions.stream(req);
      const final = await runner.finalChatCompletion();
      assertCall(final.choices[0].message.tool_calls[0]);
    });

    test('tool_choice auto and none: a reply in words or a call, never a broken one', T, async () => {
      const auto = await client.chat.completions.create({
        model: 'x', messages: ask('Tell me a story.'), tools, tool_choice: 'auto', max_tokens: 60, temperature: 0,
      });
      const m = auto.choices[0].message;
      if (m.tool_calls) {
        assert.equal(auto.choices[0].finish_reason, 'tool_calls');
        for (const c of m.tool_calls) assertCall(c);
      } else {
        assert.equal(typeof m.content, 'string');
      }
      // Streamed: the same reply; words stream as they come (Qwen, Llama templates), a call whole.
      const chunks = await drain(await client.chat.completions.create({
        model: 'x', messages: ask('Tell me a story.'), tools, tool_choice: 'auto', max_tokens: 60, temperature: 0, stream: true,
      }));
      const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
      const contentChunks = chunks.filter((c) => c.choices[0]?.delta?.content).length;
      if (m.tool_calls) {
        assert.deepEqual(chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []).map((c) => c.function.name),
                         m.tool_calls.map((c) => c.function.name));
      } else {
        assert.equal(text, m.content);
        if (family !== 'gemma') assert.ok(contentChunks > 3, `streamed in pieces, got ${contentChunks} content chunks`);
      }
      const none = await client.chat.completions.create({
        model: 'x', messages: ask('Tell me a story.'), tools, tool_choice: 'none', max_tokens: 16, temperature: 0,
      });
      assert.equal(none.choices[0].message.tool_calls, undefined);
      assert.equal(none.choices[0].finish_reason, 'length');
    });
  });
}

describe('tool requests the server refuses', { skip: missingShared(STORIES, TEMPLATES.qwen) }, () => {
  let srv;
  before(async () => {
    srv = await startServer({ model: sharedPath(STORIES), args: ['--chat-template', sharedPath(TEMPLATES.qwen)] });
  });
  after(async () => {
    if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null });
  });

  test('400s name the field', T, async () => {
    const base = { messages: ask('hi'), max_tokens: 4 };
    const cases = [
      [{ tools, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice', /not in 'tools'/],
      [{ tools, tool_choice: 'sometimes' }, 'tool_choice', /must be/],
      [{ tool_choice: 'required' }, 'tool_choice', /needs 'tools'/],
      [{ tools, response_format: { type: 'json_object' } }, 'response_format', /cannot be used together/],
      [{ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { s: { type: 'string', pattern: 'x' } } } } }],
         tool_choice: 'required' }, 'tools', /pattern/],
      [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id', /required/],
      [{ messages: [{ role: 'user', content: 'x', tool_calls: [] }] }, 'messages[0].tool_calls', /only assistant/],
      [{ messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { arguments: '{}' } }] }] },
        'messages[0].tool_calls[0]', /must be/],
    ];
    for (const [extra, param, message] of cases) {
      const r = await postJson(srv, '/v1/chat/completions', { ...base, ...extra });
      assert.equal(r.status, 400, `${JSON.stringify(extra)}: ${r.text}`);
      assertErrorBody(r.json);
      assert.equal(r.json.error.param, param, r.text);
      assert.match(r.json.error.message, message, r.text);
    }
    // A tool schema the grammar cannot enforce is fine when nothing needs the grammar (auto, Hermes).
    const ok = await postJson(srv, '/v1/chat/completions', {
      ...base, tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { s: { type: 'string', pattern: 'x' } } } } }],
    });
    assert.equal(ok.status, 200, ok.text);
  });
});
