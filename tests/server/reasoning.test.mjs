// Thinking models through the API, with the official openai client: a reply's <think> part comes
// back as message.reasoning_content (streamed: delta.reasoning_content) and the rest as the
// content, as llama-server's --reasoning-format deepseek gives it; "none" leaves it in the
// content; chat_template_kwargs (and --reasoning-budget 0) reach the template as
// enable_thinking; a template that opens <think> itself is read from inside the reasoning;
// ollama's "think" gives message.thinking.
// stories260K cannot think, so a grammar makes it write the shape a thinking model writes.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sharedPath, dataPath, missingShared, openaiClient, postJson } from './harness.mjs';
import { assertChatStream, assertErrorBody, drain } from './shapes.mjs';

const STORIES = 'models/stories260K.gguf';
const T = { timeout: 60000 };
const ask = [{ role: 'user', content: 'Tell me a story.' }];
// What Qwen3 writes: its thoughts in <think>...</think>, a blank line, the answer.
const THINKING = 'root ::= "<think>\\n" "Once upon a time" [a-z ]{1,20} "\\n</think>\\n\\n" "The end" [a-z ]{0,10} "."';

describe('reasoning_content', { skip: missingShared(STORIES) }, () => {
  let srv, client;
  before(async () => {
    srv = await startServer({
      model: sharedPath(STORIES), args: ['--chat-template', dataPath('templates/thinking-chatml.jinja'), '--parallel', '2'],
    });
    client = await openaiClient(srv);
  });
  after(async () => {
    if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null }, 'SIGTERM: exit status 0');
  });

  test('whole: the thoughts in reasoning_content, the answer in content', T, async () => {
    const r = await client.chat.completions.create({ model: 'x', messages: ask, max_tokens: 80, temperature: 0, grammar: THINKING });
    const m = r.choices[0].message;
    assert.equal(r.choices[0].finish_reason, 'stop', JSON.stringify(m));
    assert.match(m.reasoning_content, /^Once upon a time[a-z ]+$/, JSON.stringify(m));
    assert.match(m.content, /^The end[a-z ]*\.$/, JSON.stringify(m));
    // The same reply with reasoning_format none: everything in the content, tags included.
    const raw = await client.chat.completions.create({
      model: 'x', messages: ask, max_tokens: 80, temperature: 0, grammar: THINKING, reasoning_format: 'none',
    });
    assert.equal(raw.choices[0].message.reasoning_content, undefined);
    const text = raw.choices[0].message.content;
    assert.ok(text.startsWith(`<think>\n${m.reasoning_content}`), text);  // the reasoning is trimmed
    assert.ok(text.endsWith(`</think>\n\n${m.content}`), text);
  });

  test('streamed: reasoning_content deltas first, then content deltas, adding up to the whole reply', T, async () => {
    const req = { model: 'x', messages: ask, max_tokens: 80, temperature: 0, grammar: THINKING };
    const whole = (await client.chat.completions.create(req)).choices[0].message;
    const chunks = await drain(await client.chat.completions.create({ ...req, stream: true }));
    const { content, finish } = assertChatStream(chunks);
    assert.equal(finish, 'stop');
    const reasoning = chunks.map((c) => c.choices[0]?.delta?.reasoning_content ?? '').join('');
    assert.equal(reasoning, whole.reasoning_content);
    assert.equal(content, whole.content);
    const kinds = chunks.map((c) => (c.choices[0]?.delta?.reasoning_content ? 'r' : c.choices[0]?.delta?.content ? 'c' : ''))
      .filter(Boolean).join('');
    // (How many pieces each part comes in depends on how fast the client reads: events hold what
    // was generated since the last one. test_runtime_reasoning checks the splitter gives text out
    // as it comes.)
    assert.match(kinds, /^r+c+$/, 'the reasoning streams before the answer, as it is written');
  });

  test('chat_template_kwargs reach the template: enable_thinking false ends the prompt with an empty think block', T, async () => {
    const on = await postJson(srv, '/apply-template', { messages: ask });
    assert.match(on.json.prompt, /<\|im_start\|>assistant\n$/);
    const off = await postJson(srv, '/apply-template', { messages: ask, chat_template_kwargs: { enable_thinking: false } });
    assert.match(off.json.prompt, /<\|im_start\|>assistant\n<think>\n\n<\/think>\n\n$/);
    // A reply to that prompt has no reasoning: all of it is the content.
    const r = await client.chat.completions.create({
      model: 'x', messages: ask, max_tokens: 8, temperature: 0, chat_template_kwargs: { enable_thinking: false },
    });
    assert.equal(r.choices[0].message.reasoning_content, undefined);
    assert.ok(r.choices[0].message.content.length > 0);
    const tokensOn = (await client.chat.completions.create({ model: 'x', messages: ask, max_tokens: 1 })).usage.prompt_tokens;
    assert.ok(r.usage.prompt_tokens > tokensOn, 'the empty think block is in the prompt');
  });

  test('ollama\'s /api/show lists the thinking capability', T, async () => {
    const show = await postJson(srv, '/api/show', {});
    assert.ok(show.json.capabilities.includes('thinking'), JSON.stringify(show.json.capabilities));
  });

  test('reasoning_content sent back on an assistant message reaches the template', T, async () => {
    // A template that shows an assistant turn's reasoning (as Qwen3's does after the last question).
    const r = await postJson(srv, '/apply-template', {
      messages: [...ask, { role: 'assistant', content: 'The end.', reasoning_content: 'short story' }],
    });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.match(r.json.prompt, /<\|im_start\|>assistant\n<think>\nshort story\n<\/think>\n\nThe end\.<\|im_end\|>/);
    // ollama's "thinking" on an assistant message is the same field.
    const base = { model: 'x', options: { temperature: 0, num_predict: 1 }, stream: false };
    const turn = { role: 'assistant', content: 'The end.' };
    const without = await postJson(srv, '/api/chat', { ...base, messages: [...ask, turn, ...ask] });
    const withThinking = await postJson(srv, '/api/chat', { ...base, messages: [...ask, { ...turn, thinking: 'short story' }, ...ask] });
    assert.ok(withThinking.json.prompt_eval_count > without.json.prompt_eval_count,
              `${withThinking.json.prompt_eval_count} vs ${without.json.prompt_eval_count}`);
    const bad = await postJson(srv, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x', reasoning_content: 'y' }] });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, 'messages[0].reasoning_content');
  });

  test('bad reasoning_format or chat_template_kwargs: 400 naming the field', T, async () => {
    for (const [extra, param] of [
      [{ reasoning_format: 'loud' }, 'reasoning_format'],
      [{ chat_template_kwargs: 'enable_thinking=false' }, 'chat_template_kwargs'],
    ]) {
      const r = await postJson(srv, '/v1/chat/completions', { messages: ask, max_tokens: 4, ...extra });
      assert.equal(r.status, 400, JSON.stringify(r.json));
      assertErrorBody(r.json);
      assert.equal(r.json.error.param, param);
    }
    const c = await postJson(srv, '/v1/completions', { prompt: 'Once', max_tokens: 4, reasoning_format: 'none' });
    assert.equal(c.status, 400);
    assert.equal(c.json.error.param, 'reasoning_format');
  });
});

describe('a template that opens the reasoning, and --reasoning-budget 0', { skip: missingShared(STORIES) }, () => {
  test('the reply is read from inside <think>; a reply held to a schema is all answer', T, async () => {
    const srv = await startServer({ model: sharedPath(STORIES), args: ['--chat-template', dataPath('templates/thinking-open.jinja')] });
    try {
      const client = await openaiClient(srv);
      // stories260K never writes </think>: all it writes is reasoning, the answer is empty.
      const r = await client.chat.completions.create({ model: 'x', messages: ask, max_tokens: 30, temperature: 0 });
      assert.ok(r.choices[0].message.reasoning_content.length > 0);
      assert.equal(r.choices[0].message.content, '');
      const chunks = await drain(await client.chat.completions.create({
        model: 'x', messages: ask, max_tokens: 30, temperature: 0, stream: true,
      }));
      assert.equal(chunks.map((c) => c.choices[0]?.delta?.reasoning_content ?? '').join(''), r.choices[0].message.reasoning_content);
      // A grammar (here json_object) holds the reply from its first token: it is the answer.
      const json = await client.chat.completions.create({
        model: 'x', messages: ask, max_tokens: 60, temperature: 0, response_format: { type: 'json_object' },
      });
      assert.equal(json.choices[0].message.reasoning_content, undefined);
      assert.match(json.choices[0].message.content, /^\s*\{/);
    } finally {
      assert.deepEqual(await srv.stop(), { code: 0, signal: null });
    }
  });

  test('ollama\'s "think": the reasoning as message.thinking (streamed lines too); without it, all is content', T, async () => {
    const srv = await startServer({ model: sharedPath(STORIES), args: ['--chat-template', dataPath('templates/thinking-open.jinja')] });
    try {
      const client = await openaiClient(srv);
      const want = (await client.chat.completions.create({ model: 'x', messages: ask, max_tokens: 20, temperature: 0 }))
        .choices[0].message.reasoning_content;
      assert.ok(want.length > 0);
      const base = { model: 'x', messages: ask, options: { temperature: 0, num_predict: 20 } };
      const whole = await postJson(srv, '/api/chat', { ...base, think: true, stream: false });
      assert.equal(whole.status, 200, JSON.stringify(whole.json));
      assert.equal(whole.json.message.thinking, want);
      assert.equal(whole.json.message.content, '');
      const lines = await fetch(`${srv.url}/api/chat`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ...base, think: true }),
      })
        .then((r) => r.text()).then((t) => t.trim().split('\n').map((x) => JSON.parse(x)));
      assert.equal(lines.map((l) => l.message?.thinking ?? '').join(''), want);
      assert.equal(lines.at(-1).done, true);
      const plain = await postJson(srv, '/api/chat', { ...base, stream: false });
      assert.equal(plain.json.message.thinking, undefined);
      assert.ok(plain.json.message.content.startsWith(want), plain.json.message.content);
      const bad = await postJson(srv, '/api/chat', { ...base, think: 'yes', stream: false });
      assert.equal(bad.status, 400);
    } finally {
      assert.deepEqual(await srv.stop(), { code: 0, signal: null });
    }
  });

  test('--reasoning-budget 0 and --chat-template-kwargs set enable_thinking for every request', T, async () => {
    for (const args of [['--reasoning-budget', '0'], ['--chat-template-kwargs', '{"enable_thinking": false}']]) {
      const srv = await startServer({
        model: sharedPath(STORIES), args: ['--chat-template', dataPath('templates/thinking-chatml.jinja'), ...args],
      });
      try {
        const off = await postJson(srv, '/apply-template', { messages: ask });
        assert.match(off.json.prompt, /<think>\n\n<\/think>\n\n$/, args.join(' '));
        // A request may still turn it back on.
        const on = await postJson(srv, '/apply-template', { messages: ask, chat_template_kwargs: { enable_thinking: true } });
        assert.match(on.json.prompt, /<\|im_start\|>assistant\n$/, args.join(' '));
      } finally {
        assert.deepEqual(await srv.stop(), { code: 0, signal: null });
      }
    }
  });
});
