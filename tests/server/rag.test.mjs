// The document routes of `slm serve` with --embed-model and --db: POST /v1/embeddings through the
// official openai client (its default base64 encoding and float), equal to `slm embed` on the
// same texts; POST /v1/search over an index made by `slm index add`, equal to `slm search --json`;
// and the errors (dimensions, empty input, no words, routes without a model or an index).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, sharedPath, missingShared, openaiClient, postJson, cliPath } from './harness.mjs';
import { assertErrorBody } from './shapes.mjs';

const CHAT = 'models/stories260K.gguf';
const EMBED = 'fixtures/embeddings/bert-L2-E64-mean-F32.gguf';
const T = { timeout: 60000 };

function slm(args) {
  const r = spawnSync(cliPath, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `slm ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('serve --embed-model --db', { skip: missingShared(CHAT, EMBED) }, () => {
  let srv, client, dir, db;
  const embedPath = sharedPath(EMBED);
  const texts = ['How do I read a CSV file?', 'Sourdough needs a warm kitchen.', 'ünïcödé and emoji 🍞'];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slm-rag-serve-'));
    fs.mkdirSync(path.join(dir, 'notes'));
    const topics = ['bread baking', 'coffee brewing', 'csv files in python', 'bicycle tyres'];
    topics.forEach((t, i) => {
      fs.writeFileSync(path.join(dir, 'notes', `n${i}.md`),
                       `# About ${t}\n\nThis note is about ${t}.\n\n## Details\n\nMore on ${t}, step by step.\n`);
    });
    db = path.join(dir, 'notes.db');
    slm(['index', 'add', '-q', '--db', db, '--embed-model', embedPath, path.join(dir, 'notes')]);
    srv = await startServer({ model: sharedPath(CHAT), args: ['--embed-model', embedPath, '--db', db] });
    client = await openaiClient(srv);
  });
  after(async () => {
    if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null });
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('embeddings through the openai client equal slm embed (base64 and float)', T, async () => {
    const ref = JSON.parse(slm(['embed', '-m', embedPath, '--json', ...texts.flatMap((t) => ['-p', t])]));
    assert.equal(ref.length, texts.length);
    for (const encoding_format of [undefined, 'float']) {
      const r = await client.embeddings.create({ model: path.basename(embedPath), input: texts, ...(encoding_format ? { encoding_format } : {}) });
      assert.equal(r.object, 'list');
      assert.equal(r.model, path.basename(embedPath));
      assert.equal(r.data.length, texts.length);
      const tokens = ref.reduce((n, e) => n + e.tokens.length, 0);
      assert.deepEqual(r.usage, { prompt_tokens: tokens, total_tokens: tokens });
      r.data.forEach((d, i) => {
        assert.equal(d.object, 'embedding');
        assert.equal(d.index, i);
        assert.equal(d.embedding.length, 64);
        assert.ok(maxAbsDiff(d.embedding, ref[i].embedding) < 1e-6, `input ${i} (${encoding_format ?? 'base64'})`);
      });
    }
    // One string, and token ids, give the same vector as in the batch.
    const one = await client.embeddings.create({ model: 'x', input: texts[0], encoding_format: 'float' });
    assert.ok(maxAbsDiff(one.data[0].embedding, ref[0].embedding) < 1e-6);
    const ids = await client.embeddings.create({ model: 'x', input: [ref[0].tokens], encoding_format: 'float' });
    assert.ok(maxAbsDiff(ids.data[0].embedding, ref[0].embedding) < 1e-6);
  });

  test('ollama\'s /api/embed gives the same vectors', T, async () => {
    const ref = JSON.parse(slm(['embed', '-m', embedPath, '--json', ...texts.flatMap((t) => ['-p', t])]));
    const r = await postJson(srv, '/api/embed', { model: 'x', input: texts });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.embeddings.length, texts.length);
    r.json.embeddings.forEach((v, i) => assert.ok(maxAbsDiff(v, ref[i].embedding) < 1e-6, `input ${i}`));
    assert.equal(r.json.prompt_eval_count, ref.reduce((n, e) => n + e.tokens.length, 0));
    const one = await postJson(srv, '/api/embed', { input: texts[0] });
    assert.ok(maxAbsDiff(one.json.embeddings[0], ref[0].embedding) < 1e-6);
    const bad = await postJson(srv, '/api/embed', { input: 5 });
    assert.equal(bad.status, 400);
    assert.equal(typeof bad.json.error, 'string');
  });

  test('ollama\'s older /api/embeddings (vectors as pooled) and llama.cpp\'s /embedding (normalized)', T, async () => {
    const raw = JSON.parse(slm(['embed', '-m', embedPath, '--json', '--no-normalize', '-p', texts[0]]));
    const r = await postJson(srv, '/api/embeddings', { model: 'x', prompt: texts[0] });
    assert.equal(r.status, 200, r.text);
    assert.ok(maxAbsDiff(r.json.embedding, raw[0].embedding) < 1e-5);
    const norm = Math.hypot(...r.json.embedding);
    assert.ok(Math.abs(norm - 1) > 1e-3, `the pooled vector, not normalized: norm ${norm}`);
    const bad = await postJson(srv, '/api/embeddings', { input: texts[0] });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error, /prompt/);

    const ref = JSON.parse(slm(['embed', '-m', embedPath, '--json', ...texts.flatMap((t) => ['-p', t])]));
    for (const route of ['/embedding', '/embeddings']) {
      const l = await postJson(srv, route, { content: texts });
      assert.equal(l.status, 200, l.text);
      assert.equal(l.json.length, texts.length);
      l.json.forEach((e, i) => {
        assert.equal(e.index, i);
        assert.equal(e.embedding.length, 1);
        assert.ok(maxAbsDiff(e.embedding[0], ref[i].embedding) < 1e-6, `${route} input ${i}`);
      });
    }
    const one = await postJson(srv, '/embedding', { content: texts[1] });
    assert.ok(maxAbsDiff(one.json[0].embedding[0], ref[1].embedding) < 1e-6);
    const missing = await postJson(srv, '/embedding', { text: 'x' });
    assert.equal(missing.status, 400);
    assertErrorBody(missing.json);
    assert.equal(missing.json.error.param, 'content');
  });

  test('embeddings refuse what they cannot do, and the server keeps serving', T, async () => {
    for (const [body, param] of [[{ input: 'x', dimensions: 32 }, 'dimensions'], [{ input: '' }, 'input'], [{ input: [] }, 'input'],
                                 [{}, 'input'], [{ input: [1, 'a'] }, 'input'], [{ input: 'x', encoding_format: 'hex' }, 'encoding_format']]) {
      const r = await postJson(srv, '/v1/embeddings', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assertErrorBody(r.json);
      assert.equal(r.json.error.param, param, JSON.stringify(body));
    }
    const long = await postJson(srv, '/v1/embeddings', { input: 'word '.repeat(5000) });
    assert.equal(long.status, 400);
    assert.match(long.json.error.message, /tokens/);
    const ok = await postJson(srv, '/v1/embeddings', { input: 'still here' });
    assert.equal(ok.status, 200);
  });

  test('search equals slm search --json, in every mode', T, async () => {
    for (const mode of ['bm25', 'vector', 'hybrid']) {
      const want = JSON.parse(slm(['search', '--db', db, '--embed-model', embedPath, '--mode', mode, '-k', '3', '--json', 'coffee brewing']));
      const r = await postJson(srv, '/v1/search', { query: 'coffee brewing', k: 3, mode });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.object, 'list');
      assert.equal(r.json.mode, mode);
      assert.deepEqual(r.json.data, want, mode);
    }
    const def = await postJson(srv, '/v1/search', { query: 'bicycle' });
    assert.equal(def.json.mode, 'hybrid');
    assert.equal(def.json.data[0].path, 'n3.md');
  });

  test('search refuses bad queries clearly', T, async () => {
    for (const [body, param] of [[{ query: '?!' }, 'query'], [{ query: 1 }, 'query'], [{ query: 'x', k: 0 }, 'k'],
                                 [{ query: 'x', mode: 'fuzzy' }, 'mode']]) {
      const r = await postJson(srv, '/v1/search', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assertErrorBody(r.json);
      assert.equal(r.json.error.param, param);
    }
    const ops = await postJson(srv, '/v1/search', { query: '"unbalanced -foo NEAR(a b) col:term * ^x' });
    assert.equal(ops.status, 200, ops.text);
  });
});

describe('serve without --embed-model or --db', { skip: missingShared(CHAT) }, () => {
  let srv;
  before(async () => { srv = await startServer({ model: sharedPath(CHAT) }); });
  after(async () => { if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null }); });

  test('the document routes say what to start the server with', T, async () => {
    const e = await postJson(srv, '/v1/embeddings', { input: 'x' });
    assert.equal(e.status, 404);
    assertErrorBody(e.json);
    assert.match(e.json.error.message, /--embed-model/);
    const s = await postJson(srv, '/v1/search', { query: 'x' });
    assert.equal(s.status, 404);
    assert.match(s.json.error.message, /--db/);
    const o = await postJson(srv, '/api/embed', { input: 'x' });
    assert.equal(o.status, 404);
    assert.match(o.json.error, /--embed-model/);
  });
});
