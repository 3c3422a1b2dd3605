// `slm serve --lora`: the real PEFT adapter lora-sqlite-r8 on slm-docs-19m (both converted here),
// chosen per request with "lora": [{"id", "scale"}] as llama.cpp's server takes it. Greedy
// completions with the adapter equal `slm run --lora`, with scale 0 equal the base model's,
// and requests with different adapters in one batch each get their own.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, sharedPath, missingShared, postJson, httpGet, cliPath, slmRun } from './harness.mjs';
import { assertErrorBody } from './shapes.mjs';

const BASE = 'models/hf/slm-docs-19m';
const PEFT = 'models/hf/lora-sqlite-r8';
const T = { timeout: 120000 };

function slm(args) {
  const r = spawnSync(cliPath, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `slm ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('serve --lora', { skip: missingShared(BASE, PEFT) }, () => {
  let srv, dir, base, adapter;
  const prompt = 'The CREATE TABLE statement';
  const complete = (extra = {}) =>
    postJson(srv, '/v1/completions', { prompt, max_tokens: 16, temperature: 0, ...extra });

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slm-lora-serve-'));
    base = path.join(dir, 'base-f32.gguf');
    adapter = path.join(dir, 'sqlite-r8.gguf');
    slm(['convert', sharedPath(BASE), '--outtype', 'f32', '-o', base]);
    slm(['convert-lora', sharedPath(PEFT), '--base', base, '-o', adapter]);
    srv = await startServer({ model: base, args: ['--lora', adapter, '--parallel', '2', '-c', '256'] });
  });
  after(async () => {
    if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null });
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('GET /lora-adapters lists the adapter', T, async () => {
    const r = await httpGet(srv, '/lora-adapters');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, [{ id: 0, path: adapter, scale: 1 }]);
  });

  test('greedy text: adapter as slm run --lora, scale 0 as the base model, mixed in one batch', T, async () => {
    const withRef = await slmRun(['-m', base, '--lora', adapter, '-p', prompt, '-n', '16', '--temp', '0']);
    const baseRef = await slmRun(['-m', base, '-p', prompt, '-n', '16', '--temp', '0']);
    assert.notEqual(withRef, baseRef, 'the adapter changes nothing: the test could not fail');
    const a = await complete();
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.choices[0].text, withRef);
    const b = await complete({ lora: [{ id: 0, scale: 0 }] });
    assert.equal(b.status, 200, b.text);
    assert.equal(b.json.choices[0].text, baseRef);
    // Both at once: one batch holds tokens of each (per-token adapter scales), and the prompt
    // cache must not hand one request the other's keys and values.
    for (let round = 0; round < 2; round++) {
      const [x, y] = await Promise.all([complete({ lora: [{ id: 0, scale: 0 }] }), complete()]);
      assert.equal(x.json.choices[0].text, baseRef, `round ${round}`);
      assert.equal(y.json.choices[0].text, withRef, `round ${round}`);
    }
  });

  test('bad lora fields are a 400 naming the field', T, async () => {
    for (const lora of [[{ id: 1, scale: 1 }], [{ id: -1 }], 'x', [{ scale: 1 }], [{ id: 0, scale: 'big' }], [{ id: 0, scale: 1e9 }]]) {
      const r = await complete({ lora });
      assert.equal(r.status, 400, JSON.stringify(lora));
      assertErrorBody(r.json, JSON.stringify(lora));
      assert.equal(r.json.error.param, 'lora');
    }
    const ok = await complete();
    assert.equal(ok.status, 200);
  });
});
