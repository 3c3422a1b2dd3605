// The web chat page that `slm serve` serves at GET /, driven in headless Chromium against a real
// server with stories260K: the model name shows, replies stream into the page with their speed,
// the conversation is kept and sent whole, Stop keeps the partial reply, server errors show,
// text stays text, New chat clears, an API key is asked for and kept, a thinking model's
// reasoning shows in a fold. Leaves a screenshot,
// web_page.png, in the build folder (the folder of SLM_CLI_PATH), and logs its path.
//
// Needs Debian's Chromium (/usr/bin/chromium, or SLM_CHROMIUM) and the playwright-core package
// (tests/server/package.json); never downloads a browser. Without either it skips, loudly,
// except under CI=true where that is a failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, sharedPath, dataPath, requireShared, cliPath, importDep } from './harness.mjs';

const MODEL = 'models/stories260K.gguf';
const chromiumPath = process.env.SLM_CHROMIUM || '/usr/bin/chromium';
const buildDir = path.dirname(path.resolve(cliPath));
const screenshotPath = path.join(buildDir, 'web_page.png');

// playwright-core from <build>/server-tests/node_modules (see importDep in harness.mjs); null if absent.
async function loadPlaywright() {
  try {
    const mod = await importDep('playwright-core');
    return mod.chromium ? mod : mod.default;
  } catch (e) {
    console.error(e.message);
    return null;
  }
}

// Skips loudly, or fails under CI=true, when something this test needs is not installed.
function requireTool(t, ok, what) {
  if (ok) return true;
  const msg = `SKIPPING: ${what}`;
  if (process.env.CI === 'true') throw new Error(`${msg}; CI=true makes that a failure`);
  console.error(msg);
  t.skip(msg);
  return false;
}

const last = (page, sel) => page.locator(sel).last();
const assistantDone = (page) =>
  page.waitForFunction(() => !document.querySelector('#messages .msg.assistant.streaming') &&
                             !document.getElementById('send').hidden, null, { timeout: 60000 });

// Throttles what the page receives to ~10 KB/s, so a stories260K reply (100 tokens are ~16 KB of
// events, written by the server in well under a second) reaches the page over seconds. Returns a
// function that restores full speed.
async function slowNetwork(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: 5000, uploadThroughput: -1 });
  // The network service applies the conditions on its own time: let a request go through first.
  await page.evaluate(() => fetch('/health').then((r) => r.text()));
  return async () => {
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await cdp.detach();
  };
}

// Records every distinct length of the newest assistant bubble's text as the page changes it.
async function watchReply(page) {
  await page.evaluate(() => {
    window.__lengths = [];
    if (window.__observer) window.__observer.disconnect();
    window.__observer = new MutationObserver(() => {
      const bubbles = document.querySelectorAll('#messages .msg.assistant');
      const b = bubbles[bubbles.length - 1];
      if (!b) return;
      const len = b.textContent.length;
      const streaming = b.classList.contains('streaming');
      const prev = window.__lengths[window.__lengths.length - 1];
      if (!prev || prev.len !== len || prev.streaming !== streaming) window.__lengths.push({ len, streaming, t: performance.now() });
    });
    window.__observer.observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true, attributes: true });
  });
}

test('web chat page', { timeout: 180000 }, async (t) => {
  if (!requireShared(t, MODEL)) return;
  if (!requireTool(t, fs.existsSync(chromiumPath), `${chromiumPath} is missing (apt-get install chromium)`)) return;
  const playwright = await loadPlaywright();
  if (!requireTool(t, playwright, 'playwright-core is not installed (npm ci in tests/server, as ctest sets up)')) return;

  const srv = await startServer({ model: sharedPath(MODEL), args: ['--chat-template', dataPath('stories260K-chat.jinja')] });
  let browser;
  t.after(async () => {
    if (browser) await browser.close().catch(() => {});
    await srv.stop();
  });

  browser = await playwright.chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
  page.setDefaultTimeout(30000);
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`); });
  const requests = [];   // bodies the page POSTed to /v1/chat/completions
  const urls = [];       // everything the page loaded
  page.on('request', (r) => {
    urls.push(r.url());
    if (r.method() === 'POST' && r.url().endsWith('/v1/chat/completions')) requests.push(JSON.parse(r.postData()));
  });
  const bubbles = () => page.$$eval('#messages .msg', (els) => els.map((e) => ({
    role: e.classList.contains('user') ? 'user' : e.classList.contains('assistant') ? 'assistant' : '?',
    text: e.textContent, elements: e.children.length })));
  // Sets a control in the settings panel, opening it first when closed.
  const setting = async (sel, value) => {
    if (await page.isHidden('#settings')) await page.click('#settings-toggle');
    await page.fill(sel, value);
  };
  const send = async (text, { enter = false } = {}) => {
    await page.fill('#prompt', text);
    if (enter) await page.press('#prompt', 'Enter');
    else await page.click('#send');
  };

  await t.test('GET / serves the page as HTML', async () => {
    const r = await fetch(`${srv.url}/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') || '', /^text\/html/);
    const body = await r.text();
    assert.match(body, /id="messages"/);
  });

  await t.test('the header shows the model from /v1/models', async () => {
    const models = await (await fetch(`${srv.url}/v1/models`)).json();
    const id = models.data[0].id;
    await page.goto(`${srv.url}/`);
    await page.waitForFunction((want) => document.getElementById('model-name').textContent === want, id);
    assert.equal(await page.isHidden('#error'), true);
  });

  await t.test('a reply streams into the page and shows its speed', async () => {
    await setting('#max-tokens', '100');
    await setting('#temperature', '0');
    await setting('#system', '');
    // stories260K writes 100 tokens in 15-70 ms, often faster than the page reads: the browser
    // then gets the whole reply in one read and there is nothing to see grow. A slow link (these
    // 100 tokens are ~16 KB of events: ~3 s at 5 KB/s) makes the page's streaming visible; at
    // 10 KB/s one CI run saw a reply that ended early (~8 KB) arrive in two reads. The server's
    // own streaming is checked by the other tests in this folder.
    const fastAgain = await slowNetwork(page);
    await watchReply(page);
    await send('Once upon a time');
    // While it streams, Stop replaces Send.
    await page.waitForSelector('#stop', { state: 'visible' });
    assert.equal(await page.isHidden('#send'), true);
    await assistantDone(page);
    await fastAgain();
    const lengths = await page.evaluate(() => window.__lengths);
    const partial = lengths.filter((o) => o.streaming && o.len > 0);
    assert.ok(partial.length >= 2,
      `the reply should appear in pieces while it streams; saw lengths ${JSON.stringify(lengths.map((o) => o.len))}`);
    const final = await last(page, '#messages .msg.assistant').textContent();
    assert.ok(final.trim().length > 0, 'the reply is empty');
    assert.ok(partial.every((o) => o.len <= final.length));
    const stats = await last(page, '#messages .stats').textContent();
    assert.match(stats, /\d+(\.\d+)? tok\/s/, `stats: ${stats}`);
    assert.match(stats, /first token \d+ ms/, `stats: ${stats}`);
    assert.equal(await page.isHidden('#error'), true, await page.textContent('#error'));
    const req = requests.at(-1);
    assert.equal(req.stream, true);
    assert.deepEqual(req.stream_options, { include_usage: true });
    assert.equal(req.max_tokens, 100);
    assert.equal(req.temperature, 0);
    assert.deepEqual(req.messages, [{ role: 'user', content: 'Once upon a time' }]);
    console.log(`first reply, seen in ${partial.length} growing pieces (${stats}): ${JSON.stringify(final.slice(0, 100))}...`);
  });

  await t.test('a second message keeps the conversation and sends it whole', async () => {
    const first = await bubbles();
    const sent = requests.length;
    // Shift+Enter starts a new line, Enter sends.
    await page.fill('#prompt', 'The little dog');
    await page.press('#prompt', 'Shift+Enter');
    await page.type('#prompt', 'ran to the park.');
    assert.equal(await page.inputValue('#prompt'), 'The little dog\nran to the park.');
    assert.equal(requests.length, sent, 'Shift+Enter sent the message');
    await page.press('#prompt', 'Enter');
    await assistantDone(page);
    assert.equal(await page.inputValue('#prompt'), '');
    const all = await bubbles();
    assert.deepEqual(all.map((b) => b.role), ['user', 'assistant', 'user', 'assistant']);
    assert.ok(all[3].text.trim().length > 0, 'the second reply is empty');
    assert.deepEqual(requests.at(-1).messages, [
      { role: 'user', content: 'Once upon a time' },
      { role: 'assistant', content: first[1].text },
      { role: 'user', content: 'The little dog\nran to the park.' },
    ]);
    assert.equal(await page.$$eval('#messages .stats', (s) => s.filter((e) => /tok\/s/.test(e.textContent)).length), 2);
  });

  await t.test('Stop ends a long reply, keeps the partial text, and the page goes on', async () => {
    await setting('#max-tokens', '1000');
    // On a fast link the whole reply can arrive before the click lands (CI saw that: Stop was
    // hidden again and the click waited 30 s). The slow link keeps the reply streaming for
    // seconds, so the click always meets a reply in progress.
    const fastAgain = await slowNetwork(page);
    await watchReply(page);
    await send('Once upon a time there was a dragon');
    await page.waitForFunction(() => {
      const b = [...document.querySelectorAll('#messages .msg.assistant')].pop();
      return b && b.classList.contains('streaming') && b.textContent.length > 0;
    }, null, { polling: 'raf' });
    await page.click('#stop');
    await assistantDone(page);
    await fastAgain();
    const all = await bubbles();
    assert.equal(all.length, 6);
    const partial = all[5].text;
    assert.ok(partial.length > 0, 'Stop lost the partial reply');
    const stats = await last(page, '#messages .stats').textContent();
    assert.match(stats, /stopped/, `the reply finished before Stop was clicked? stats: ${stats}`);
    assert.equal(await page.isHidden('#stop'), true);
    assert.equal(await page.isEnabled('#send'), true);
    assert.equal(await page.isHidden('#error'), true, await page.textContent('#error'));
    // The text does not grow after Stop.
    await page.waitForTimeout(300);
    assert.equal(await last(page, '#messages .msg.assistant').textContent(), partial);

    // The page is still usable, and the partial reply is part of the conversation.
    await setting('#max-tokens', '40');
    await send('The end.');
    await assistantDone(page);
    const after = await bubbles();
    assert.equal(after.length, 8);
    assert.ok(after[7].text.trim().length > 0);
    const msgs = requests.at(-1).messages;
    assert.equal(msgs.length, 7);
    assert.deepEqual(msgs[5], { role: 'assistant', content: partial });
  });

  await t.test('text is shown as text, never as HTML', async () => {
    const html = '<img src=x onerror="window.__xss=1"><b>bold</b> & "quotes"';
    await setting('#max-tokens', '20');
    await send(html);
    await assistantDone(page);
    const all = await bubbles();
    const mine = all.at(-2);
    assert.equal(mine.role, 'user');
    assert.equal(mine.text, html);
    assert.ok(all.every((b) => b.elements === 0), 'a message bubble holds HTML elements');
    assert.equal(await page.evaluate(() => window.__xss), undefined);
  });

  await t.test('the screenshot', async () => {
    await page.click('#settings-toggle');   // closes the settings, to show the conversation
    await page.waitForSelector('#settings', { state: 'hidden' });
    await page.screenshot({ path: screenshotPath, fullPage: false });
    console.log(`screenshot: ${screenshotPath}`);
  });

  await t.test('a server error shows in the page', async () => {
    // More tokens than the context holds: the server refuses with 400 {"error": {"message": ...}}.
    await setting('#max-tokens', '100000');
    const before = (await bubbles()).length;
    const refused = page.waitForResponse((r) => r.url().endsWith('/v1/chat/completions'));
    await send('This one fails');
    const resp = await refused;
    assert.equal(resp.status(), 400);
    const { error } = await resp.json();
    assert.equal(error.code, 'context_length_exceeded');
    await page.waitForSelector('#error', { state: 'visible' });
    // The page left older turns out and tried again (see below), so what it shows is the last
    // refusal: the newest message alone with max_tokens 100000 does not fit either.
    const shown = await page.textContent('#error-text');
    assert.ok(shown.includes('400') && shown.includes('max_tokens is 100000') && shown.includes('more than the context'),
              `shown: ${shown}`);
    assert.equal((await bubbles()).length, before, 'a refused turn stays in the conversation');
    assert.equal(await page.inputValue('#prompt'), 'This one fails', 'the refused text is not given back to edit');
    assert.equal(await page.isHidden('#stop'), true);
    await page.click('#error-close');
    assert.equal(await page.isHidden('#error'), true);
  });

  await t.test('New chat clears the conversation; the system prompt goes first', async () => {
    await page.click('#new-chat');
    assert.equal((await bubbles()).length, 0);
    assert.equal(await page.isHidden('#error'), true);
    await setting('#max-tokens', '30');
    await setting('#system', 'Lily and the dog.');
    await send('Once upon a time');
    await assistantDone(page);
    assert.deepEqual(requests.at(-1).messages, [
      { role: 'system', content: 'Lily and the dog.' },
      { role: 'user', content: 'Once upon a time' },
    ]);
    assert.equal((await bubbles()).length, 2);
    assert.ok((await last(page, '#messages .msg.assistant').textContent()).length > 0);
  });

  await t.test('a conversation longer than the context goes on: its oldest turns are left out and greyed', async () => {
    const small = await startServer({ model: sharedPath(MODEL),
      args: ['--chat-template', dataPath('stories260K-chat.jinja'), '-c', '128'] });
    const context = await browser.newContext({ viewport: { width: 1000, height: 760 } });
    try {
      const p = await context.newPage();
      const sent = [];
      p.on('request', (r) => { if (r.method() === 'POST' && r.url().endsWith('/v1/chat/completions')) sent.push(JSON.parse(r.postData())); });
      await p.goto(`${small.url}/`);
      await p.click('#settings-toggle');
      await p.fill('#max-tokens', '30');
      const turns = ['Once upon a time there was a girl', 'She had a red ball', 'The dog ran to the park', 'Then they went home'];
      for (const text of turns) {
        await p.fill('#prompt', text);
        await p.click('#send');
        await assistantDone(p);
      }
      assert.equal(await p.isHidden('#error'), true, await p.textContent('#error-text'));
      const rows = await p.$$eval('#messages .row', (rs) => rs.map((r) => r.classList.contains('forgotten')));
      assert.equal(rows.length, 8, 'every turn is on the page');
      assert.ok(rows[0] && rows[1], 'the first turn is greyed');
      assert.equal(rows[6], false, 'the newest turn is not');
      const lastSent = sent.at(-1).messages;
      assert.equal(lastSent.at(-1).content, turns.at(-1));
      assert.ok(!lastSent.some((m) => m.content === turns[0]), 'the first message was left out of the last request');
      // A refused attempt came before: the page retried with fewer messages.
      assert.ok(sent.length > turns.length, `${sent.length} requests for ${turns.length} turns`);
    } finally {
      await context.close();
      assert.deepEqual(await small.stop(), { code: 0, signal: null });
    }
  });

  await t.test('an API key is asked for, kept, and sent as a Bearer token', async () => {
    const key = 'web-page-test-key';
    const srvKey = await startServer({ model: sharedPath(MODEL),
      args: ['--chat-template', dataPath('stories260K-chat.jinja'), '--api-key', key] });
    const context = await browser.newContext({ viewport: { width: 1000, height: 760 } });
    try {
      const models = await (await fetch(`${srvKey.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).json();
      const id = models.data[0].id;
      const p = await context.newPage();
      const auth = [];
      p.on('request', (r) => { if (r.url().includes('/v1/')) auth.push(r.headers().authorization); });
      await p.goto(`${srvKey.url}/`);
      await p.waitForSelector('#error', { state: 'visible' });
      assert.match(await p.textContent('#error-text'), /401/);
      assert.equal(await p.isVisible('#api-key'), true, 'a 401 opens the settings');
      await p.fill('#api-key', key);
      await p.press('#api-key', 'Enter');
      await p.waitForFunction((want) => document.getElementById('model-name').textContent === want, id);
      assert.equal(await p.isHidden('#error'), true);
      await p.fill('#max-tokens', '20');
      await p.fill('#temperature', '0');
      await p.fill('#prompt', 'Once upon a time');
      await p.click('#send');
      await assistantDone(p);
      assert.ok((await p.textContent('#messages .msg.assistant')).length > 0);
      assert.equal(auth.at(-1), `Bearer ${key}`);
      // Kept in this browser: a reload needs no key typed.
      await p.reload();
      await p.waitForFunction((want) => document.getElementById('model-name').textContent === want, id);
      assert.equal(await p.inputValue('#api-key'), key);
    } finally {
      await context.close();
      await srvKey.stop();
    }
  });

  await t.test('a thinking model: its reasoning shows in a fold above the answer', async () => {
    // A template that opens <think> itself: stories260K never closes it, so all of its reply is
    // reasoning_content and the answer is empty; the page keeps the turn and shows the thoughts.
    const srvThink = await startServer({ model: sharedPath(MODEL), args: ['--chat-template', dataPath('templates/thinking-open.jinja')] });
    const context = await browser.newContext();
    try {
      const p = await context.newPage();
      const sent = [];
      p.on('request', (r) => { if (r.method() === 'POST' && r.url().endsWith('/v1/chat/completions')) sent.push(JSON.parse(r.postData())); });
      await p.goto(`${srvThink.url}/`);
      await p.click('#settings-toggle');
      await p.fill('#max-tokens', '30');
      await p.fill('#temperature', '0');
      await p.fill('#prompt', 'Hi');
      await p.click('#send');
      await assistantDone(p);
      const shown = await p.$eval('#messages .row.assistant', (row) => ({
        foldHidden: row.querySelector('.thinking').hidden,
        thoughts: row.querySelector('.thinking .body').textContent,
        answerHidden: row.querySelector('.msg').hidden,
      }));
      assert.equal(shown.foldHidden, false);
      assert.equal(shown.answerHidden, true, 'no answer came, only reasoning');
      const api = await fetch(`${srvThink.url}/v1/chat/completions`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ ...sent[0], stream: false, stream_options: undefined }),
      }).then((r) => r.json());
      assert.ok(api.choices[0].message.reasoning_content.length > 0);
      assert.equal(shown.thoughts, api.choices[0].message.reasoning_content);
      assert.equal(await p.isHidden('#error'), true, 'a reply of reasoning alone is not an error');
    } finally {
      await context.close();
      await srvThink.stop();
    }
  });

  await t.test('the page loads nothing from elsewhere (no CDN, fonts or images)', () => {
    const foreign = urls.filter((u) => !u.startsWith(`${srv.url}/`) && !u.startsWith('data:'));
    assert.deepEqual(foreign, []);
  });

  await t.test('no script errors in the page', () => {
    // The 400 from the refusal test above is the only failed load.
    assert.deepEqual(pageErrors.filter((e) => !/status of 400/.test(e)), []);
  });

  await t.test('the server exits cleanly after the browser leaves', async () => {
    await browser.close();
    browser = null;
    assert.deepEqual(await srv.stop(), { code: 0, signal: null });
  });
});
