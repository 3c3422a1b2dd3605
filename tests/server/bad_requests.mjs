// The bad requests of malformed.test.mjs, as raw HTTP/1.1 bytes with the status each must get
// (not a test file itself).
import assert from 'node:assert/strict';
import { assertErrorBody } from './shapes.mjs';

export const KEY = 'sk-test-Zq1!';
export const CTX = 64;
export const CHAT = '/v1/chat/completions';
export const COMP = '/v1/completions';
export const MiB = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 requests (every byte under our control: invalid UTF-8, truncation, no length)

export function httpRequest({ method = 'POST', route = CHAT, body = null, contentType = 'application/json', auth = `Bearer ${KEY}`,
                       headers = {}, contentLength = true }) {
  const b = body === null ? null : Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body), 'utf8');
  let head = `${method} ${route} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n`;
  if (auth !== null) head += `Authorization: ${auth}\r\n`;
  if (contentType !== null && b !== null) head += `Content-Type: ${contentType}\r\n`;
  if (b !== null && contentLength) head += `Content-Length: ${b.length}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  head += '\r\n';
  return b === null ? Buffer.from(head, 'latin1') : Buffer.concat([Buffer.from(head, 'latin1'), b]);
}

export const json = (o) => Buffer.from(JSON.stringify(o), 'utf8');
// A JSON text with raw bytes spliced in: before + bytes + after.
const splice = (before, bytes, after) => Buffer.concat([Buffer.from(before), Buffer.from(bytes), Buffer.from(after)]);

export const okChat = { messages: [{ role: 'user', content: 'Once' }], max_tokens: 2, temperature: 0 };
export const okComp = { prompt: 'Once', max_tokens: 2, temperature: 0 };

// Deterministic "random" bytes.
function prng(seed) {
  let x = seed >>> 0;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
}
export function randomBytes(seed, n) {
  const r = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; ++i) b[i] = r() & 0xff;
  return b;
}

// ---------------------------------------------------------------------------------------------
// The cases: { name, bytes, expect: status | [statuses], check?(response) }

export function badCases(promptTokens) {
  const cases = [];
  const add = (name, bytes, expect, check) => cases.push({ name, bytes, expect, check });
  const post = (route, body, opts = {}) => httpRequest({ route, body, ...opts });

  // Positive controls: the server must not refuse everything.
  add('control: chat', post(CHAT, okChat), 200);
  add('control: completions', post(COMP, okComp), 200);
  add('control: unicode escapes incl. a surrogate pair', post(CHAT, '{"messages":[{"role":"user","content":"caf\\u00e9 \\ud83d\\ude00"}],"max_tokens":2}'), 200);
  add('control: UTF-8 text', post(COMP, { prompt: 'Ünïcödé ✓ 日本', max_tokens: 2 }), 200);
  add('control: null optional fields', post(COMP, { ...okComp, temperature: null, stop: null, seed: null, top_p: null }), 200);
  add('control: at the context limit', post(COMP, { prompt: 'Once', max_tokens: CTX - promptTokens.Once, temperature: 0 }), 200);

  for (const [route, base] of [[CHAT, okChat], [COMP, okComp]]) {
    const r = route === CHAT ? 'chat' : 'completions';
    // Invalid JSON.
    const invalid = [
      '{', '}', '{"messages":', '{"messages": [}', '[1,2', 'nul', 'tru', '{"a":1,}', "{'prompt': 'hi'}",
      '{"messages": [{"role": "user", "content": "hi"}]', '{"prompt": "hi" "max_tokens": 3}', '{"prompt": "hi", }',
      '{"prompt": "\\x41"}', '{"prompt": "\\u12"}', '{"prompt": "a\nb"}', '{"prompt": "hi"} trailing',
      '{"prompt": "hi"}{"prompt": "hi"}', '{"prompt":"hi","temperature":NaN}', '{"prompt":"hi","temperature":Infinity}',
      '{"prompt":"hi","max_tokens":0x10}', '{"prompt":"hi","max_tokens":01}', '/* c */ {"prompt":"hi"}',
      '{"prompt":"hi","temperature":-}', '{"prompt":"hi","temperature":1e}', '{"prompt":"hi",,"max_tokens":2}',
      '{"prompt":"hi"', '{"prompt":"hi\\', '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,}',
    ];
    invalid.forEach((s, i) => add(`${r}: invalid JSON #${i} ${JSON.stringify(s).slice(0, 40)}`, post(route, s), 400));
    // Not an object.
    for (const s of ['[]', '[{"role":"user","content":"hi"}]', '"hello"', '42', 'null', 'true', '{}'])
      add(`${r}: body ${s}`, post(route, s), 400);
    // Empty body, with and without Content-Length: 0.
    add(`${r}: empty body`, post(route, ''), 400);
    // No body and no Content-Type: refused for the missing JSON media type before any body.
    add(`${r}: no body at all`, httpRequest({ route, body: null, headers: { 'Content-Length': '0' } }), 415);
    // Truncated JSON (delivered whole: the JSON itself ends early).
    const full = JSON.stringify({ ...base, stop: ['\n\n'], temperature: 0.5 });
    for (const cut of [1, 7, Math.floor(full.length / 2), full.length - 2, full.length - 1])
      add(`${r}: JSON truncated at ${cut}/${full.length}`, post(route, full.slice(0, cut)), 400);
    // Random bytes.
    for (let s = 1; s <= 8; ++s) add(`${r}: ${16 * s} random bytes (seed ${s})`, post(route, randomBytes(s, 16 * s)), 400);
    // Deep nesting, 100000 levels.
    const D = 100000;
    add(`${r}: [[[...]]] ${D} deep`, post(route, '['.repeat(D) + ']'.repeat(D)), 400);
    add(`${r}: {"a":{"a":...}} ${D} deep`, post(route, '{"a":'.repeat(D) + '1' + '}'.repeat(D)), 400);
    add(`${r}: [[[ unclosed ${D} deep`, post(route, '['.repeat(D)), 400);
    add(`${r}: deep array inside a field`, post(route, `{"${route === CHAT ? 'messages' : 'prompt'}":${'['.repeat(D)}${']'.repeat(D)}}`), 400);

    // Wrong field types and values the OpenAI API documents as out of range.
    const bad = {
      max_tokens: ['"10"', 'true', '[10]', '{}', '1.5', '0', '-5'],
      max_completion_tokens: ['"10"', 'false', '[1]', '2.5', '0', '-1'],
      temperature: ['"0.5"', 'true', '[]', '{}', '-1', '2.5'],
      top_p: ['"1"', 'false', '[1]', '-0.1', '1.5'],
      seed: ['"42"', '1.5', 'true', '[]', '{}'],
      stop: ['5', '[1]', '[null]', '{}', 'true', '["a","b","c","d","e"]'],
      presence_penalty: ['"0"', 'true', '[]', '3', '-3'],
      frequency_penalty: ['"0"', 'false', '{}', '2.5', '-2.5'],
      n: ['"1"', '1.5', 'true', '2', '0', '-1', '5'],
      stream: ['"true"', '1', '{}', '[]'],
      top_k: ['"40"', '1.5', 'true', '[]'],
      min_p: ['"0.1"', 'true', '[]'],
      repeat_penalty: ['"1.1"', 'true', '{}'],
      typical_p: ['"0.5"', '0', '1.5', '-1'],
      xtc_probability: ['2', '-0.1', '"1"'],
      xtc_threshold: ['1.5', '-1'],
      mirostat: ['3', '-1', '1.5', '"2"'],
      mirostat_tau: ['0', '-1'],
      mirostat_eta: ['-0.1'],
      top_n_sigma: ['"1"', '1e9'],
      dry_multiplier: ['-1', '"0.8"'],
      dry_base: ['0.5', 'true'],
      dry_allowed_length: ['-1', '1.5'],
      dry_penalty_last_n: ['-2'],
      dry_sequence_breakers: ['"\\n"', '[1]', '[""]', '{}'],
      samplers: ['5', '[1]', '["nope"]', '"kq"', '["temperature","top_k"]', '{}'],
      model: ['5', '{}', '[]', 'true'],
      ...(route === CHAT ? { logprobs: ['"yes"', '1', '[]'], top_logprobs: ['"3"', '2.5', 'true', '21', '-1'] } : {}),
    };
    for (const [field, values] of Object.entries(bad)) {
      for (const v of values) {
        const body = JSON.stringify(base).replace(/}$/, `,"${field}":${v}}`);
        add(`${r}: ${field}: ${v}`, post(route, body), 400);
      }
    }
    // stream_options must be an object (with stream: true).
    for (const v of ['5', '"x"', '[]', 'true'])
      add(`${r}: stream_options: ${v}`, post(route, JSON.stringify({ ...base, stream: true }).replace(/}$/, `,"stream_options":${v}}`)), 400);

    // Huge numbers.
    const huge = {
      max_tokens: ['1e400', '99999999999999999999', '9223372036854775807', '18446744073709551615', '-9223372036854775808', '1000000000'],
      temperature: ['1e400', '-1e400', '99999999999999999999'],
      seed: ['1e400', '99999999999999999999', '1e20'],
      top_k: ['99999999999999999999', '1e400'],
      n: ['99999999999999999999', '1e400'],
    };
    for (const [field, values] of Object.entries(huge)) {
      for (const v of values) {
        const body = JSON.stringify(base).replace(/}$/, `,"${field}":${v}}`);
        add(`${r}: huge ${field}: ${v}`, post(route, body), 400);
      }
    }
    // Over the context (-c 64): prompt + max_tokens, a prompt alone.
    const overCheck = (mt) => (res) => {
      const m = res.json.error.message;
      assert.ok(m.includes(String(CTX)), `the message names the context (${CTX}): ${m}`);
      assert.ok(m.includes(String(mt)) || m.includes(String(mt + promptTokens.Once)), `the message names max_tokens (${mt}) or the total: ${m}`);
    };
    for (const mt of [CTX - promptTokens.Once + 1, CTX, 100, 5000])
      add(`${r}: max_tokens ${mt} over the context`, post(route, { ...base, max_tokens: mt }), 400, route === COMP ? overCheck(mt) : undefined);
    add(`${r}: max_completion_tokens over the context`, post(route, { ...base, max_tokens: undefined, max_completion_tokens: CTX }), 400);
    const longText = 'Once upon a time there was a little girl named Lily who loved to play. '.repeat(8);
    const longBody = route === CHAT ? { messages: [{ role: 'user', content: longText }] } : { prompt: longText };
    add(`${r}: prompt longer than the context, no max_tokens`, post(route, longBody), 400,
        (res) => assert.ok(res.json.error.message.includes(String(CTX)), `the message names the context: ${res.json.error.message}`));

    // Unsupported features.
    const unsupported = (res) => assert.match(res.json.error.message, /not supported|unsupported/i);
    // Constrained output it cannot enforce (structured_output.test.mjs has the rest).
    add(`${r}: response_format json_schema with pattern`, post(route, { ...base, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: 'a+' } } } }), 400,
        (res) => assert.match(res.json.error.message, /pattern/));
    add(`${r}: response_format of unknown type`, post(route, { ...base, response_format: { type: 'yaml' } }), 400);
    // Tools: chat only, and well formed (tool_calls.test.mjs has the rest).
    const weather = { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } };
    if (route === COMP) add(`${r}: tools`, post(route, { ...base, tools: [weather] }), 400);
    for (const tools of [5, 'x', {}, [5], [{ type: 'function' }], [{ type: 'retrieval' }], [{ type: 'function', function: { name: 'a b' } }],
                         [weather, weather], [{ type: 'function', function: { name: 'f', parameters: 'x' } }]])
      add(`${r}: tools ${JSON.stringify(tools)}`, post(route, { ...base, tools }), 400);
    add(`${r}: functions (the old form)`, post(route, { ...base, functions: [weather.function] }), 400, unsupported);
    add(`${r}: best_of 2`, post(route, { ...base, best_of: 2 }), 400);
    add(`${r}: audio modalities`, post(route, { ...base, modalities: ['text', 'audio'] }), 400, unsupported);
    if (route === CHAT) add(`${r}: echo`, post(route, { ...base, echo: true }), 400);
    if (route === COMP) add(`${r}: echo with logprobs`, post(route, { ...base, echo: true, logprobs: 1 }), 400, unsupported);
    if (route === COMP) add(`${r}: echo with a suffix`, post(route, { ...base, echo: true, suffix: 'x' }), 400);

    // Invalid UTF-8 inside strings.
    const badUtf8 = [[0xff], [0xc3, 0x28], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xfe, 0xfe], [0xe0, 0x80, 0xaf]];
    const where = route === CHAT
      ? [['content', '{"messages":[{"role":"user","content":"ab', 'cd"}],"max_tokens":2}'],
         ['role', '{"messages":[{"role":"us', 'er","content":"hi"}],"max_tokens":2}'],
         ['stop', '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"stop":["x', '"]}']]
      : [['prompt', '{"prompt":"ab', 'cd","max_tokens":2}'],
         ['stop', '{"prompt":"hi","max_tokens":2,"stop":"x', '"}'],
         ['model', '{"prompt":"hi","max_tokens":2,"model":"m', '"}']];
    for (const [field, before, afterText] of where)
      for (const bytes of badUtf8)
        add(`${r}: invalid UTF-8 ${Buffer.from(bytes).toString('hex')} in ${field}`, post(route, splice(before, bytes, afterText)), 400);
    // Lone surrogates written as escapes are not text either.
    for (const esc of ['\\ud800', '\\udc00', '\\ud800\\u0041', '\\udbff'])
      add(`${r}: lone surrogate ${esc}`, post(route, route === CHAT
        ? `{"messages":[{"role":"user","content":"a${esc}b"}],"max_tokens":2}` : `{"prompt":"a${esc}b","max_tokens":2}`), 400);
  }

  // Chat only: messages and their parts.
  const msgs = (m) => post(CHAT, { messages: m, max_tokens: 2 });
  add('chat: messages missing', post(CHAT, { max_tokens: 2 }), 400);
  add('chat: messages null', post(CHAT, { messages: null, max_tokens: 2 }), 400);
  add('chat: messages []', msgs([]), 400);
  for (const m of ['"hi"', '5', '{}', 'true', '[5]', '["hi"]', '[null]', '[[]]'])
    add(`chat: messages ${m}`, post(CHAT, `{"messages":${m},"max_tokens":2}`), 400);
  add('chat: message without role', msgs([{ content: 'hi' }]), 400);
  add('chat: user message without content', msgs([{ role: 'user' }]), 400);
  for (const role of [5, null, [], {}, true])
    add(`chat: role ${JSON.stringify(role)}`, msgs([{ role, content: 'hi' }]), 400);
  for (const role of ['robot', '', 'USER', 'tool', 'function', 'admin', 'bot', 'assistant ', 'system\u0000', 'usér'])
    add(`chat: unknown role ${JSON.stringify(role)}`, msgs([{ role, content: 'hi' }]), 400,
        (res) => assert.ok(res.json.error.message.length > 0));
  for (const content of [5, true, {}, [5], ['hi'], [{ type: 'text' }], [{ type: 'text', text: 5 }], [{ text: 'hi' }],
                         [{ type: 'image_url', image_url: { url: 'http://127.0.0.1/x.png' } }], [null]])
    add(`chat: content ${JSON.stringify(content)}`, msgs([{ role: 'user', content }]), 400);
  add('chat: prompt instead of messages', post(CHAT, okComp), 400);
  // Completions only.
  add('completions: prompt missing', post(COMP, { max_tokens: 2 }), 400);
  add('completions: messages instead of prompt', post(COMP, okChat), 400);
  for (const p of [5, true, {}, [1, 2, 3], ['a', 'b'], [[1]]])
    add(`completions: prompt ${JSON.stringify(p)}`, post(COMP, { prompt: p, max_tokens: 2 }), 400);

  // Unknown routes and methods.
  const NOT_ROUTE = [404, 405];
  for (const [method, route] of [['GET', '/v2/models'], ['GET', '/v1/model'], ['POST', '/v1/chat/completion'], ['POST', '/v1/chat'],
                                 ['GET', '/nope'], ['GET', '/v1/../../etc/passwd'],
                                 ['GET', '/v1/chat/completions/'], ['POST', '/v1/completions/extra'], ['GET', '/%00'], ['GET', '/v1/models/x/y']])
    add(`${method} ${route}: no such route`, httpRequest({ method, route, body: method === 'POST' ? json(okComp) : null }), 404);
  // The document routes of a server started without --embed-model and --db: 404 saying so.
  for (const route of ['/v1/embeddings', '/v1/search'])
    add(`POST ${route} without its model or index`, httpRequest({ method: 'POST', route, body: json({ input: 'x', query: 'x' }) }), 404);
  for (const [method, route] of [['GET', CHAT], ['GET', COMP], ['PUT', CHAT], ['DELETE', CHAT], ['PATCH', COMP], ['POST', '/v1/models'],
                                 ['POST', '/health'], ['POST', '/metrics'], ['DELETE', '/v1/models'], ['GET', '/v1/embeddings'],
                                 ['GET', '/v1/search']])
    add(`${method} ${route}: wrong method`, httpRequest({ method, route, body: method === 'GET' || method === 'DELETE' ? null : json(okComp) }), NOT_ROUTE);

  // Bodies that are not JSON whatever their type says.
  add('chat: form-urlencoded body', post(CHAT, 'messages=hi&max_tokens=2', { contentType: 'application/x-www-form-urlencoded' }), [400, 415]);
  add('completions: form-urlencoded body', post(COMP, 'prompt=hi&max_tokens=2', { contentType: 'application/x-www-form-urlencoded' }), [400, 415]);
  add('chat: multipart body', post(CHAT, '--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhi\r\n--b--\r\n', { contentType: 'multipart/form-data; boundary=b' }), [400, 415]);
  add('completions: XML body', post(COMP, '<prompt>hi</prompt>', { contentType: 'application/xml' }), [400, 415]);

  // API key: missing or wrong on /v1/* → 401.
  const wrongKeys = [null, 'Bearer wrong', `Bearer ${KEY.toLowerCase()}`, `Basic ${KEY}`, KEY, 'Bearer ', 'Bearer',
                     `Bearer ${KEY}${KEY}`, `Bearer ${KEY.slice(0, -1)}`, `bearer${KEY}`];
  for (const auth of wrongKeys) {
    add(`API key ${JSON.stringify(auth)} on chat`, httpRequest({ route: CHAT, body: json(okChat), auth }), 401);
    add(`API key ${JSON.stringify(auth)} on completions`, httpRequest({ route: COMP, body: json(okComp), auth }), 401);
    add(`API key ${JSON.stringify(auth)} on GET /v1/models`, httpRequest({ method: 'GET', route: '/v1/models', auth }), 401);
  }
  return cases;
}

// What went wrong with one case, or null.
export function judge(c, res) {
  const want = Array.isArray(c.expect) ? c.expect : [c.expect];
  const got = `got ${res.status || (res.closed ? 'the connection closed without a response' : 'no response')}` +
              (res.error ? ` (${res.error})` : '') + `: ${res.body.slice(0, 200)}`;
  if (!want.includes(res.status)) return `${c.name}: expected ${want.join(' or ')}, ${got}`;
  if (res.status === 200) return null;
  try {
    assertErrorBody(res.json, c.name);
    if (c.check) c.check(res);
  } catch (e) {
    return `${c.name}: ${e.message.split('\n')[0]} (${got})`;
  }
  return null;
}

