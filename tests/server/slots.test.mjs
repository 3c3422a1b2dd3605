// llama-server's slot actions on stories260K: POST /slots/ID?action=save|restore {"filename"}
// with --slot-save-path, and ?action=erase. A slot saved after a completion, erased, and
// restored (in the same server, and in a new one started on the same folder) serves the same
// prompt again evaluating only its last token, with the same greedy text; bad requests get 4xx
// naming what is wrong; a server without --slot-save-path answers 501; a file made under other
// cache types is refused.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, sharedPath, missingShared, postJson, httpGet } from './harness.mjs';
import { assertErrorBody } from './shapes.mjs';

const STORIES = 'models/stories260K.gguf';
const T = { timeout: 60000 };
const KEY = 'slots-key';
const auth = { authorization: `Bearer ${KEY}` };
const PROMPT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.';

describe('slot save, restore and erase', { skip: missingShared(STORIES) }, () => {
  let srv;
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'slm-slots-')), 'made');  // the server makes it
  const serverArgs = ['--api-key', KEY, '--parallel', '2', '--slot-save-path', dir];
  before(async () => { srv = await startServer({ model: sharedPath(STORIES), args: serverArgs }); });
  after(async () => {
    if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null });
    fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  });

  const complete = () => postJson(srv, '/completion', { prompt: PROMPT, n_predict: 16, temperature: 0 }, { headers: auth });
  const slots = async () => (await httpGet(srv, '/slots', { headers: auth })).json;
  const action = (id, act, body = {}) => postJson(srv, `/slots/${id}?action=${act}`, body, { headers: auth });

  let first, id, saved;
  test('save: the slot that served a completion, its tokens and bytes', T, async () => {
    first = await complete();
    assert.equal(first.status, 200, first.text);
    const held = (await slots()).filter((s) => s.n_past > 0);
    assert.equal(held.length, 1, JSON.stringify(held));
    id = held[0].id;
    const r = await action(id, 'save', { filename: 'lily.bin' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.id_slot, id);
    assert.equal(r.json.filename, 'lily.bin');
    assert.equal(r.json.n_saved, held[0].n_past);
    assert.equal(r.json.n_written, fs.statSync(path.join(dir, 'lily.bin')).size);
    assert.ok(r.json.timings.save_ms >= 0);
    saved = r.json.n_saved;
  });

  test('erase, then restore: the same prompt then evaluates only its last token, same text', T, async () => {
    const e = await action(id, 'erase');
    assert.equal(e.status, 200, e.text);
    assert.deepEqual(e.json, { id_slot: id, n_erased: saved });
    assert.ok((await slots()).every((s) => s.n_past === 0));
    const r = await action(id, 'restore', { filename: 'lily.bin' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.n_restored, saved);
    assert.equal(r.json.n_read, fs.statSync(path.join(dir, 'lily.bin')).size);
    assert.equal((await slots()).find((s) => s.id === id).n_past, saved);
    const again = await complete();
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.content, first.json.content);
    assert.equal(again.json.timings.prompt_n, 1, JSON.stringify(again.json.timings));
    assert.equal(again.json.timings.cache_n, first.json.tokens_evaluated - 1);
  });

  test('bad requests: action, filename, slot, API key', T, async () => {
    const cases = [
      [`/slots/${id}?action=load`, { filename: 'x' }, 400, 'action'],
      [`/slots/${id}`, { filename: 'x' }, 400, 'action'],
      [`/slots/${id}?action=save`, {}, 400, 'filename'],
      [`/slots/${id}?action=save`, { filename: 7 }, 400, 'filename'],
      [`/slots/${id}?action=save`, { filename: '../escape.bin' }, 400, 'filename'],
      [`/slots/${id}?action=save`, { filename: '.hidden' }, 400, 'filename'],
      [`/slots/${id}?action=restore`, { filename: 'missing.bin' }, 400, 'filename'],
      ['/slots/9?action=erase', {}, 400, 'id_slot'],
    ];
    for (const [route, body, status, param] of cases) {
      const r = await postJson(srv, route, body, { headers: auth });
      assert.equal(r.status, status, `${route} ${JSON.stringify(body)}: ${r.text}`);
      assertErrorBody(r.json, status);
      if (param) assert.equal(r.json.error.param, param, r.text);
    }
    assert.ok(!fs.existsSync(path.join(dir, '..', 'escape.bin')));
    const r = await postJson(srv, `/slots/${id}?action=erase`, {});
    assert.equal(r.status, 401, r.text);
  });

  test('a new server on the same folder restores the slot', T, async () => {
    const other = await startServer({ model: sharedPath(STORIES), args: serverArgs });
    try {
      const r = await postJson(other, '/slots/1?action=restore', { filename: 'lily.bin' }, { headers: auth });
      assert.equal(r.status, 200, r.text);
      const c = await postJson(other, '/completion', { prompt: PROMPT, n_predict: 16, temperature: 0 }, { headers: auth });
      assert.equal(c.status, 200, c.text);
      assert.equal(c.json.content, first.json.content);
      assert.equal(c.json.timings.prompt_n, 1, JSON.stringify(c.json.timings));
    } finally {
      assert.deepEqual(await other.stop(), { code: 0, signal: null });
    }
  });

  test('other cache types refuse the file; without --slot-save-path it is 501', T, async () => {
    const q8 = await startServer({ model: sharedPath(STORIES), args: [...serverArgs, '--kv-type', 'q8_0'] });
    try {
      const r = await postJson(q8, '/slots/0?action=restore', { filename: 'lily.bin' }, { headers: auth });
      assert.equal(r.status, 400, r.text);
      assert.match(r.json.error.message, /another model or settings/);
    } finally {
      assert.deepEqual(await q8.stop(), { code: 0, signal: null });
    }
    const plain = await startServer({ model: sharedPath(STORIES) });
    try {
      const r = await postJson(plain, '/slots/0?action=save', { filename: 'x.bin' });
      assert.equal(r.status, 501, r.text);
      assert.match(r.json.error.message, /--slot-save-path/);
      const e = await postJson(plain, '/slots/0?action=erase', {});
      assert.equal(e.status, 200, e.text);
    } finally {
      assert.deepEqual(await plain.stop(), { code: 0, signal: null });
    }
  });
});
