// Runs the portal's unit tests (test/*.test.ts) with Node's own test runner (`node --test`,
// Node >= 18): esbuild bundles each file for Node into node_modules/.cache/ first. No test
// framework to install. Quiet when all pass; the runner's whole report when one fails.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'node_modules', '.cache', 'portal-tests');
const tests = (await readdir(here)).filter((name) => name.endsWith('.test.ts')).sort();
await build({
  absWorkingDir: join(here, '..'),
  entryPoints: tests.map((name) => join('test', name)),
  outdir: out,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node18',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  loader: { '.css': 'empty' },
  logLevel: 'warning',
});
const files = tests.map((name) => join(out, name.replace(/\.ts$/, '.mjs')));
const run = spawnSync(process.execPath, ['--test', ...files], { encoding: 'utf8' });
const passed = /^# pass (\d+)/m.exec(run.stdout ?? '')?.[1] ?? '?';
if (run.status !== 0) {
  process.stdout.write(run.stdout ?? '');
  process.stderr.write(run.stderr ?? '');
  console.error(`portal: unit tests failed (${tests.join(', ')})`);
  process.exit(1);
}
console.log(`portal: ${passed} unit tests passed`);
