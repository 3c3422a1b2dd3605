// How ctest runs one tests/server/*.test.mjs file: `node --test` on it, its output passed
// through, and its exit status kept, except that a file that passed while saying "SKIPPING:"
// (a missing shared fixture, browser or package) exits 77, which ctest reports as skipped
// (SKIP_RETURN_CODE). A skip never hides a failure: a failing file exits non-zero as usual.
//   node tests/server/run_test.mjs tests/server/openai_api.test.mjs
import { spawn } from 'node:child_process';

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node run_test.mjs FILE.test.mjs...');
  process.exit(2);
}
const child = spawn(process.execPath, ['--test', '--test-reporter=spec', ...files], { stdio: ['ignore', 'pipe', 'pipe'] });
let skipped = false;
const watch = (stream, out) => {
  let tail = '';
  stream.on('data', (d) => {
    out.write(d);
    tail = (tail + d.toString()).slice(-4096);
    if (tail.includes('SKIPPING:')) skipped = true;
  });
};
watch(child.stdout, process.stdout);
watch(child.stderr, process.stderr);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => {
  if (signal) {
    console.error(`run_test.mjs: node --test was killed by ${signal}`);
    process.exit(1);
  }
  if (code === 0 && skipped) {
    console.error('run_test.mjs: passed, but parts were skipped (see SKIPPING: above): reporting the test as skipped');
    process.exit(77);
  }
  process.exit(code ?? 1);
});
