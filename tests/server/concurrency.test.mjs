// Continuous batching must not change results: eight streaming requests sent at once each get
// exactly the text the same request gets alone, on a server with a slot for each
// (--parallel 8) and on one where half of them wait in the queue (the default --parallel 4).
// Completions and chat; greedy requests and seeded sampled ones mixed, prompts of different
// lengths so that the batch holds prompt chunks and decoding tokens together.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sharedPath, dataPath, missingShared, openaiClient, metrics, sleep } from './harness.mjs';
import { assertChatStream, assertCompletionStream } from './shapes.mjs';

const STORIES = 'models/stories260K.gguf';
const MAX_TOKENS = 64;

const PROMPTS = [
  'Once upon a time',
  'Lily and Ben',
  'The cat',
  'Tom had a big red ball. He liked to throw it high in the sky. One day, the ball',
  'One day, a little bird',
  'Sue went to the park with her mom and',
  'The sun was',
  'A dog named Max lived in a small house near the woods. Every morning he',
];
// Greedy for most, seeded sampling for some: each request keeps its own random state.
const SAMPLING = PROMPTS.map((_, i) => (i % 3 === 2 ? { temperature: 0.9, top_p: 1, seed: 100 + i } : { temperature: 0 }));

// One streamed request through the openai client; its text, usage and when its first and last
// pieces arrived.
async function streamOne(client, kind, i) {
  const base = { model: 'x', max_tokens: MAX_TOKENS, stream: true, stream_options: { include_usage: true }, ...SAMPLING[i] };
  const stream = kind === 'chat'
    ? await client.chat.completions.create({ ...base, messages: [{ role: 'user', content: PROMPTS[i] }] })
    : await client.completions.create({ ...base, prompt: PROMPTS[i] });
  const chunks = [];
  let first = null;
  for await (const c of stream) {
    const piece = kind === 'chat' ? c.choices[0]?.delta?.content : c.choices[0]?.text;
    if (piece && first === null) first = performance.now();
    chunks.push(c);
  }
  const end = performance.now();
  const r = kind === 'chat' ? assertChatStream(chunks, { includeUsage: true }) : assertCompletionStream(chunks, { includeUsage: true });
  return { text: kind === 'chat' ? r.content : r.text, usage: r.usage, finish: r.finish, first, end };
}

async function checkBatching(srv, client, kind, { parallel }) {
  // Alone first, one after the other.
  const alone = [];
  for (let i = 0; i < PROMPTS.length; ++i) alone.push(await streamOne(client, kind, i));
  for (const a of alone) assert.ok(a.text.length > 0 && a.usage.completion_tokens > 0);
  const distinct = new Set(alone.map((a) => a.text)).size;
  assert.ok(distinct >= PROMPTS.length - 1, `eight prompts gave only ${distinct} different texts: the prompt is not honoured`);

  // Then all at once, while /metrics is watched.
  let maxBusy = 0, maxQueue = 0, polling = true;
  const poller = (async () => {
    while (polling) {
      const m = await metrics(srv);
      maxBusy = Math.max(maxBusy, m.get('slm_slots_busy'));
      maxQueue = Math.max(maxQueue, m.get('slm_queue_depth'));
      await sleep(5);
    }
  })();
  let together;
  try {
    together = await Promise.all(PROMPTS.map((_, i) => streamOne(client, kind, i)));
  } finally {
    polling = false;
    await poller;
  }
  for (let i = 0; i < PROMPTS.length; ++i) {
    assert.equal(together[i].text, alone[i].text,
                 `${kind} request ${i} (${JSON.stringify(PROMPTS[i])}, ${JSON.stringify(SAMPLING[i])}): text in a batch differs from alone`);
    assert.equal(together[i].finish, alone[i].finish);
    assert.equal(together[i].usage.completion_tokens, alone[i].usage.completion_tokens);
    assert.equal(together[i].usage.prompt_tokens, alone[i].usage.prompt_tokens);
  }
  // They really ran together: some two streams were generating at the same time (served one
  // after the other, a stream's first piece would come after the previous one's end).
  let overlapping = 0;
  for (let i = 0; i < together.length; ++i)
    for (let j = i + 1; j < together.length; ++j)
      if (together[i].first < together[j].end && together[j].first < together[i].end) ++overlapping;
  assert.ok(overlapping > 0, 'no two of the eight streams overlapped in time: requests were not batched');
  const m = await metrics(srv);
  assert.equal(m.get('slm_slots_busy'), 0, 'all slots free afterwards');
  assert.equal(m.get('slm_queue_depth'), 0, 'queue empty afterwards');
  assert.ok(maxBusy <= parallel, `slm_slots_busy ${maxBusy} exceeded --parallel ${parallel}`);
  return { maxBusy, maxQueue, overlapping };
}

for (const parallel of [8, 4]) {
  describe(`--parallel ${parallel}: 8 concurrent streams equal the same requests alone`, { skip: missingShared(STORIES) }, () => {
    let srv, client;
    before(async () => {
      const args = ['--chat-template', dataPath('stories260K-chat.jinja')];
      if (parallel !== 4) args.push('--parallel', String(parallel));  // 4 is the default
      srv = await startServer({ model: sharedPath(STORIES), args });
      client = await openaiClient(srv);
      assert.equal((await metrics(srv)).get('slm_slots_total'), parallel);
    });
    after(async () => {
      if (srv) assert.deepEqual(await srv.stop(), { code: 0, signal: null });
    });

    for (const kind of ['completions', 'chat']) {
      test(`${kind}`, { timeout: 90000 }, async () => {
        const info = await checkBatching(srv, client, kind, { parallel });
        console.log(`${kind} --parallel ${parallel}: max slots busy seen ${info.maxBusy}, max queue ${info.maxQueue}, overlapping pairs ${info.overlapping}`);
      });
    }
  });
}
