// slm serve -m NAME for a model ollama has pulled (core/ollama_store.h), in a models folder laid
// out as ollama's and named by OLLAMA_MODELS: the server loads the blob and goes by the name
// (/api/tags, /v1/models), as ollama would list it; an unknown name stops the server at once,
// saying where it looked.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { startServer, sharedPath, missingShared, postJson, httpGet, cliPath } from './harness.mjs';

const STORIES = 'models/stories260K.gguf';
const T = { timeout: 60000 };
const DIGEST = 'ab'.repeat(32);

describe('ollama model names', { skip: missingShared(STORIES) }, () => {
  let srv;
  const store = fs.mkdtempSync(path.join(os.tmpdir(), 'slm-ollama-'));
  before(async () => {
    fs.mkdirSync(path.join(store, 'blobs'));
    fs.copyFileSync(sharedPath(STORIES), path.join(store, 'blobs', `sha256-${DIGEST}`));
    const manifest = path.join(store, 'manifests', 'registry.ollama.ai', 'library', 'stories', '260k');
    fs.mkdirSync(path.dirname(manifest), { recursive: true });
    fs.writeFileSync(manifest, JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      layers: [{ mediaType: 'application/vnd.ollama.image.model', digest: `sha256:${DIGEST}`, size: 1185664 }],
    }));
    srv = await startServer({ model: 'stories:260k', env: { OLLAMA_MODELS: store } });
  });
  after(async () => {
    if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null });
    fs.rmSync(store, { recursive: true, force: true });
  });

  test('the server goes by the ollama name and generates', T, async () => {
    const tags = await httpGet(srv, '/api/tags');
    assert.equal(tags.json.models[0].name, 'stories:260k');
    const models = await httpGet(srv, '/v1/models');
    assert.equal(models.json.data[0].id, 'stories:260k');
    const r = await postJson(srv, '/api/generate', { model: 'stories:260k', prompt: 'Once upon a time', raw: true, stream: false,
                                                     options: { num_predict: 8, temperature: 0 } });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.response.length > 0);
  });

  test('an unknown name: the server stops, saying where it looked', T, () => {
    const r = spawnSync(cliPath, ['serve', '-m', 'llama3.2:1b', '--port', '0'], { env: { ...process.env, OLLAMA_MODELS: store },
                                                                                  encoding: 'utf8', timeout: 30000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /not a model ollama has pulled/);
    assert.ok(r.stderr.includes(store), r.stderr);
  });
});
