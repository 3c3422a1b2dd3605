// Checks of the OpenAI response shapes shared by the server tests (not a test file itself).
import assert from 'node:assert/strict';

const nowSec = () => Math.floor(Date.now() / 1000);

function assertCreated(created, what) {
  assert.ok(Number.isInteger(created), `${what}.created must be an integer (Unix seconds), got ${created}`);
  assert.ok(Math.abs(created - nowSec()) < 600, `${what}.created ${created} is not about now (${nowSec()})`);
}

// usage: { prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details: { cached_tokens } }
export function assertUsage(u, what = 'usage') {
  assert.ok(u && typeof u === 'object', `${what} missing`);
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens'])
    assert.ok(Number.isInteger(u[k]) && u[k] >= 0, `${what}.${k} must be a non-negative integer, got ${u[k]}`);
  assert.ok(u.prompt_tokens > 0, `${what}.prompt_tokens is 0`);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, `${what}.total_tokens != prompt + completion`);
  assert.ok(u.prompt_tokens_details && Number.isInteger(u.prompt_tokens_details.cached_tokens),
            `${what}.prompt_tokens_details.cached_tokens must be an integer: ${JSON.stringify(u)}`);
  const c = u.prompt_tokens_details.cached_tokens;
  assert.ok(c >= 0 && c < u.prompt_tokens, `${what}: cached_tokens ${c} must be in [0, prompt_tokens ${u.prompt_tokens})`);
}

const FINISH = ['stop', 'length'];

export function assertChatCompletion(r, { model } = {}) {
  assert.equal(typeof r.id, 'string');
  assert.ok(r.id.length > 0, 'empty id');
  assert.equal(r.object, 'chat.completion');
  assertCreated(r.created, 'chat.completion');
  assert.equal(typeof r.model, 'string');
  if (model !== undefined) assert.equal(r.model, model);
  assert.equal(r.choices.length, 1, 'one choice');
  const c = r.choices[0];
  assert.equal(c.index, 0);
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(FINISH.includes(c.finish_reason), `finish_reason ${c.finish_reason}`);
  assertUsage(r.usage);
  return { content: c.message.content, finish: c.finish_reason, usage: r.usage };
}

export function assertCompletion(r, { model } = {}) {
  assert.equal(typeof r.id, 'string');
  assert.ok(r.id.length > 0, 'empty id');
  assert.equal(r.object, 'text_completion');
  assertCreated(r.created, 'text_completion');
  assert.equal(typeof r.model, 'string');
  if (model !== undefined) assert.equal(r.model, model);
  assert.equal(r.choices.length, 1, 'one choice');
  const c = r.choices[0];
  assert.equal(c.index, 0);
  assert.equal(typeof c.text, 'string');
  assert.ok(FINISH.includes(c.finish_reason), `finish_reason ${c.finish_reason}`);
  assertUsage(r.usage);
  return { text: c.text, finish: c.finish_reason, usage: r.usage };
}

// A string that is well-formed UTF-16 (a split UTF-8 character shows as a lone surrogate or
// U+FFFD after a round trip).
export function assertWellFormed(s, what) {
  assert.equal(Buffer.from(s, 'utf8').toString('utf8'), s, `${what} is not well-formed text: ${JSON.stringify(s)}`);
}

// The chunks of a streamed chat completion (as the openai client or postSse yields them).
// Returns { content, finish, usage, id }.
export function assertChatStream(chunks, { includeUsage = false, model } = {}) {
  assert.ok(chunks.length >= 2, `too few chunks: ${chunks.length}`);
  const id = chunks[0].id;
  assert.equal(typeof id, 'string');
  assert.ok(id.length > 0);
  let content = '';
  let finish = null;
  let usage = null;
  let sawRole = false;
  chunks.forEach((ch, i) => {
    const at = `chunk ${i}`;
    assert.equal(ch.object, 'chat.completion.chunk', at);
    assert.equal(ch.id, id, `${at}: every chunk has the same id`);
    assertCreated(ch.created, at);
    assert.equal(ch.created, chunks[0].created, `${at}: created changes`);
    if (model !== undefined) assert.equal(ch.model, model, at);
    if (ch.choices.length === 0) {
      // The usage chunk: last, only with include_usage.
      assert.ok(includeUsage, `${at}: a chunk without choices but include_usage was not asked for`);
      assert.equal(i, chunks.length - 1, `${at}: the usage chunk must be the last`);
      assertUsage(ch.usage, `${at}.usage`);
      usage = ch.usage;
      return;
    }
    assert.equal(ch.choices.length, 1, at);
    assert.equal(finish, null, `${at}: a chunk after the one with finish_reason`);
    const c = ch.choices[0];
    assert.equal(c.index, 0, at);
    assert.ok(c.delta && typeof c.delta === 'object', `${at}: delta`);
    if (i === 0) {
      assert.equal(c.delta.role, 'assistant', 'the first chunk carries the role');
      sawRole = true;
    } else {
      assert.ok(c.delta.role === undefined || c.delta.role === 'assistant', `${at}: role ${c.delta.role}`);
    }
    if (c.delta.content !== undefined && c.delta.content !== null) {
      assert.equal(typeof c.delta.content, 'string', at);
      assertWellFormed(c.delta.content, `${at} content`);
      content += c.delta.content;
    }
    if (!includeUsage) assert.ok(ch.usage === undefined || ch.usage === null, `${at}: usage without include_usage`);
    if (c.finish_reason !== null && c.finish_reason !== undefined) {
      assert.ok(FINISH.includes(c.finish_reason), `${at}: finish_reason ${c.finish_reason}`);
      finish = c.finish_reason;
    }
  });
  assert.ok(sawRole);
  assert.ok(finish, 'no chunk with finish_reason');
  if (includeUsage) assert.ok(usage, 'include_usage but no usage chunk');
  return { content, finish, usage, id };
}

export function assertCompletionStream(chunks, { includeUsage = false, model } = {}) {
  assert.ok(chunks.length >= 1, 'no chunks');
  const id = chunks[0].id;
  assert.ok(typeof id === 'string' && id.length > 0);
  let text = '';
  let finish = null;
  let usage = null;
  chunks.forEach((ch, i) => {
    const at = `chunk ${i}`;
    assert.equal(ch.object, 'text_completion', at);
    assert.equal(ch.id, id, `${at}: every chunk has the same id`);
    assertCreated(ch.created, at);
    if (model !== undefined) assert.equal(ch.model, model, at);
    if (ch.choices.length === 0) {
      assert.ok(includeUsage, `${at}: a chunk without choices but include_usage was not asked for`);
      assert.equal(i, chunks.length - 1, `${at}: the usage chunk must be the last`);
      assertUsage(ch.usage, `${at}.usage`);
      usage = ch.usage;
      return;
    }
    assert.equal(ch.choices.length, 1, at);
    assert.equal(finish, null, `${at}: a chunk after the one with finish_reason`);
    const c = ch.choices[0];
    assert.equal(c.index, 0, at);
    assert.equal(typeof c.text, 'string', at);
    assertWellFormed(c.text, `${at} text`);
    text += c.text;
    if (!includeUsage) assert.ok(ch.usage === undefined || ch.usage === null, `${at}: usage without include_usage`);
    if (c.finish_reason !== null && c.finish_reason !== undefined) {
      assert.ok(FINISH.includes(c.finish_reason), `${at}: finish_reason ${c.finish_reason}`);
      finish = c.finish_reason;
    }
  });
  assert.ok(finish, 'no chunk with finish_reason');
  if (includeUsage) assert.ok(usage, 'include_usage but no usage chunk');
  return { text, finish, usage, id };
}

// {"error": {"message", "type", "param", "code"}} with a non-empty message.
export function assertErrorBody(json, what = 'error body') {
  assert.ok(json && typeof json === 'object' && json.error && typeof json.error === 'object',
            `${what}: not {"error": {...}}: ${JSON.stringify(json)?.slice(0, 300)}`);
  const e = json.error;
  assert.ok(typeof e.message === 'string' && e.message.trim().length > 0, `${what}: empty error.message`);
  assert.ok(typeof e.type === 'string' && e.type.length > 0, `${what}: error.type must be a non-empty string`);
  for (const k of ['param', 'code']) {
    assert.ok(k in e, `${what}: error.${k} missing (null is fine)`);
    assert.ok(e[k] === null || typeof e[k] === 'string' || typeof e[k] === 'number', `${what}: error.${k} is ${typeof e[k]}`);
  }
}

// The openai client's stream as an array of chunks.
export async function drain(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}
