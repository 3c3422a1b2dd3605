// What the PostgreSQL index is for: two `slm serve` processes (two machines' worth) answering
// POST /v1/search from one index, each the same as `slm search --json` on an SQLite file of the
// same documents, both finding a document that `slm index sync` put in while they ran, and both
// saying 503 while the database is down, then answering again once it is back.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, sharedPath, missingShared, postJson, cliPath } from './harness.mjs';
import { missingPostgres, startPostgres } from './postgres.mjs';

const CHAT = 'models/stories260K.gguf';
const T = { timeout: 60000 };

function slm(args) {
  const r = spawnSync(cliPath, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `slm ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('two servers, one PostgreSQL index', { skip: missingShared(CHAT) || missingPostgres() }, () => {
  let a, b, dir, db, url, pg;
  const note = (t) => `# About ${t}\n\nThis note is about ${t}.\n\n## Details\n\nMore on ${t}, step by step.\n`;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slm-rag-pg-'));
    fs.mkdirSync(path.join(dir, 'notes'));
    ['bread baking', 'coffee brewing', 'csv files in python', 'bicycle tyres'].forEach((t, i) => {
      fs.writeFileSync(path.join(dir, 'notes', `n${i}.md`), note(t));
    });
    db = path.join(dir, 'notes.db');
    pg = startPostgres();
    url = pg.url('serve_two');
    slm(['index', 'add', '-q', '--db', db, path.join(dir, 'notes')]);
    slm(['index', 'add', '-q', '--db', url, path.join(dir, 'notes')]);
    [a, b] = await Promise.all([startServer({ model: sharedPath(CHAT), args: ['--db', url] }),
                                startServer({ model: sharedPath(CHAT), args: ['--db', url] })]);
  });
  after(async () => {
    for (const s of [a, b]) if (s) assert.deepEqual(await s.stop(), { code: 0, signal: null });
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    pg?.stop();
  });

  test('each answers as slm search does on an SQLite file of the same notes', T, async () => {
    for (const query of ['coffee brewing', 'how do I read csv files', 'tyres']) {
      const want = JSON.parse(slm(['search', '--db', db, '--json', '-k', '3', query]));
      assert.ok(want.length > 0, query);
      for (const srv of [a, b]) {
        const r = await postJson(srv, '/v1/search', { query, k: 3, mode: 'bm25' });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.data.length, want.length, query);
        r.json.data.forEach((h, i) => {
          assert.equal(h.path, want[i].path, query);
          assert.deepEqual(h.lines, want[i].lines, query);
          assert.ok(Math.abs(h.score - want[i].score) < 1e-9, `${query}: ${h.score} vs ${want[i].score}`);
        });
      }
    }
  });

  test('a note indexed while they run is found by both', T, async () => {
    fs.writeFileSync(path.join(dir, 'notes', 'n9.md'), note('sourdough starters'));
    slm(['index', 'sync', '-q', '--db', url]);
    for (const srv of [a, b]) {
      const r = await postJson(srv, '/v1/search', { query: 'sourdough', k: 3, mode: 'bm25' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.data[0]?.path, 'n9.md', r.text);
    }
  });

  test('the database down: 503 index_unavailable; back up: answers again', { ...T, skip: process.env.SLM_TEST_POSTGRES_URL ? 'a server the test does not own' : false }, async () => {
    pg.pause();
    try {
      for (const srv of [a, b]) {
        const r = await postJson(srv, '/v1/search', { query: 'coffee', k: 1, mode: 'bm25' });
        assert.equal(r.status, 503, r.text);
        assert.equal(r.json.error.code, 'index_unavailable', r.text);
        assert.match(r.json.error.message, /PostgreSQL/);
      }
    } finally {
      pg.resume();
    }
    for (const srv of [a, b]) {
      const r = await postJson(srv, '/v1/search', { query: 'coffee', k: 1, mode: 'bm25' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.data[0].path, 'n1.md');
    }
  });
});
