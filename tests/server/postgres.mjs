// A private PostgreSQL server for the server tests of the PostgreSQL index (as tests/support/
// postgres.h does for the C++ tests): SLM_TEST_POSTGRES_URL when set, else Debian's postgresql
// package started in a temporary folder, listening only on a Unix socket there. As root it runs
// as the `postgres` user (PostgreSQL refuses root).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function binDir() {
  const root = '/usr/lib/postgresql';
  if (!fs.existsSync(root)) return null;
  const found = fs.readdirSync(root).map((v) => path.join(root, v, 'bin')).filter((d) => fs.existsSync(path.join(d, 'initdb')));
  return found.sort().pop() ?? null;
}

// For describe()'s skip: false when a server can be had, else why not (printed loudly); under
// CI=true, where install-deps.sh has installed PostgreSQL, that throws instead.
export function missingPostgres() {
  if (process.env.SLM_TEST_POSTGRES_URL || binDir()) return false;
  const msg = 'SKIPPING: PostgreSQL is not installed (scripts/install-deps.sh installs it)';
  if (process.env.CI === 'true') throw new Error(`${msg}; CI=true makes that a failure`);
  console.error(msg);
  return msg;
}

// { url(schema), sql(text), stop() }.
export function startPostgres() {
  if (process.env.SLM_TEST_POSTGRES_URL) return wrap(process.env.SLM_TEST_POSTGRES_URL, () => {});
  const bin = binDir();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slm-pg-'));
  const root = process.getuid() === 0;
  if (root) execFileSync('chown', ['postgres', dir]);
  const asServer = (args) => {
    const r = root ? spawnSync('runuser', ['-u', 'postgres', '--', ...args], { encoding: 'utf8' })
                   : spawnSync(args[0], args.slice(1), { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}${r.stdout}`);
  };
  asServer([path.join(bin, 'initdb'), '-D', path.join(dir, 'data'), '-A', 'trust', '-U', 'slm', '-E', 'UTF8',
            '--locale=C.UTF-8', '--no-sync']);
  const start = () => asServer([path.join(bin, 'pg_ctl'), '-D', path.join(dir, 'data'), '-w', '-t', '60', '-l',
                                 path.join(dir, 'server.log'), '-o', `-k ${dir} -c listen_addresses= -p 5432 -c fsync=off`, 'start']);
  const halt = () => asServer([path.join(bin, 'pg_ctl'), '-D', path.join(dir, 'data'), '-m', 'immediate', 'stop']);
  start();
  const pg = wrap(`postgresql:///postgres?host=${dir}&port=5432&user=slm`, () => {
    try { halt(); } catch { /* already stopped */ }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  // The server down and up again, its data kept (what a restart of the database looks like).
  pg.pause = halt;
  pg.resume = start;
  return pg;
}

function wrap(base, stop) {
  const sql = (text) => execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', base, '-c', `SET client_min_messages = warning; ${text}`]);
  return {
    sql,
    // A URL whose tables go into `schema`, made now and empty.
    url(schema) {
      sql(`DROP SCHEMA IF EXISTS ${schema} CASCADE; CREATE SCHEMA ${schema}`);
      return `${base}&options=-csearch_path%3D${schema}`;
    },
    stop,
  };
}
