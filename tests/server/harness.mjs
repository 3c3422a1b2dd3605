// Starts a real `slm serve` on a free loopback port for the Node tests and stops it after.
//
//   const srv = await startServer({ model: sharedPath('models/stories260K.gguf'),
//                                   args: ['--chat-template', dataPath('stories260K-chat.jinja')] });
//   ... fetch(`${srv.url}/v1/models`) ...
//   await srv.stop();
//
// The server is started with --port 0; it prints "slm: listening on http://HOST:PORT" on stderr
// once it accepts connections. SLM_CLI_PATH names the binary (ctest sets it; the ASan build's
// binary can be named the same way), SLM_SHARED the team's reference data.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const sourceDir = path.resolve(here, '..', '..');
export const cliPath = process.env.SLM_CLI_PATH || path.join(sourceDir, 'build', 'release', 'slm');
export const sharedDir = process.env.SLM_SHARED || path.resolve(sourceDir, '..', 'shared');

export function sharedPath(rel) { return path.join(sharedDir, rel); }
export function dataPath(rel) { return path.join(sourceDir, 'tests', 'data', rel); }

// Skips (loudly) when a reference file is missing, except under CI=true where that is a failure.
export function requireShared(t, rel) {
  const p = sharedPath(rel);
  if (fs.existsSync(p)) return true;
  const msg = `SKIPPING: ${p} is missing (set SLM_SHARED to the team's shared folder)`;
  if (process.env.CI === 'true') throw new Error(`${msg}; CI=true makes a missing fixture a failure`);
  console.error(msg);
  t.skip(msg);
  return false;
}

export async function startServer({ model, args = [], env = {}, timeoutMs = 60000 } = {}) {
  const argv = ['serve', '-m', model, '--host', '127.0.0.1', '--port', '0', ...args];
  const proc = spawn(cliPath, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`slm serve did not start in ${timeoutMs} ms:\n${stderr}`)), timeoutMs);
    proc.stderr.on('data', (d) => {
      stderr += d.toString();
      const m = stderr.match(/listening on (http:\/\/[^\s]+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.stdout.on('data', () => {});
    exited.then(({ code, signal }) => { clearTimeout(timer); reject(new Error(`slm serve exited (${code ?? signal}) before listening:\n${stderr}`)); });
  });
  // /health is 503 while the model loads, 200 once requests are served.
  for (let i = 0; ; ++i) {
    const r = await fetch(`${url}/health`).catch(() => null);
    if (r && r.status === 200) break;
    if (i * 50 > timeoutMs) throw new Error(`slm serve at ${url} never became healthy:\n${stderr}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  return {
    url,
    proc,
    get stderr() { return stderr; },
    // Resident memory of the server process in KiB (Linux /proc).
    rssKiB() {
      const status = fs.readFileSync(`/proc/${proc.pid}/status`, 'utf8');
      return Number(status.match(/VmRSS:\s+(\d+)/)[1]);
    },
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10000);
      const r = await exited;
      clearTimeout(timer);
      return r;
    },
    exited,
  };
}
