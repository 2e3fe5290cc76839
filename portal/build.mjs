// Bundles the portal into dist/, which crates/ssp-server/build.rs embeds into the binary:
//   dist/index.html   the page (copied from src/index.html)
//   dist/app.js       src/main.tsx and what it imports (an ES module, minified)
//   dist/app.css      the styles it imports (xterm's included)
//   dist/chunk-*.js   code loaded on demand (the terminal, with xterm.js), named by content
//   dist/licenses.txt the licences of the npm packages bundled into them
//
// The output is deterministic: the same sources and lock file give the same bytes. Files are
// written only when their bytes change and stale ones are removed, so a rebuild that changes
// nothing leaves dist/ untouched and cargo does not rebuild ssp-server for it.
import { build } from 'esbuild';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

const result = await build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.tsx' },
  outdir: 'dist',
  bundle: true,
  // Code splitting keeps xterm.js (~290 KB) out of the first load: only the terminal needs it.
  splitting: true,
  format: 'esm',
  chunkNames: 'chunk-[hash]',
  minify: true,
  target: ['es2020', 'chrome90', 'firefox90', 'safari15'],
  // noVNC (the remote desktop) probes H.264 decoding with a top-level await. The browsers
  // above all run it (Chrome and Firefox since 89, Safari since 15); only the es2020 baseline
  // does not, and nothing else of it is relaxed.
  supported: { 'top-level-await': true },
  jsx: 'automatic',
  jsxImportSource: 'preact',
  charset: 'utf8',
  // Licence comments in the code stay; the packages' own licence files go to licenses.txt.
  legalComments: 'eof',
  banner: { js: '/* ssp portal. Licences of the bundled packages: /assets/licenses.txt */' },
  define: { 'process.env.NODE_ENV': '"production"' },
  sourcemap: false,
  metafile: true,
  write: false,
  logLevel: 'warning',
});

const wanted = new Map();
for (const file of result.outputFiles) {
  wanted.set(basename(file.path), Buffer.from(file.contents));
}
wanted.set('index.html', await readFile(join(here, 'src/index.html')));
wanted.set('licenses.txt', Buffer.from(await licenses(Object.keys(result.metafile.inputs))));

await mkdir(dist, { recursive: true });
for (const name of await readdir(dist)) {
  if (!wanted.has(name)) await rm(join(dist, name), { recursive: true, force: true });
}
let written = 0;
for (const [name, bytes] of wanted) {
  const path = join(dist, name);
  const old = await readFile(path).catch(() => null);
  if (old === null || !old.equals(bytes)) {
    await writeFile(path, bytes);
    written += 1;
  }
}

const sizes = [...wanted]
  .sort(([a], [b]) => a.localeCompare(b))
  .map(([name, bytes]) => `${name} ${(bytes.length / 1024).toFixed(1)} KiB`)
  .join(', ');
console.log(`portal: dist/ ${sizes} (${written} file(s) changed)`);

/**
 * The licence texts of the packages whose files were bundled, by name: each package's own
 * licence file, the full text of its licence where it ships one apart (noVNC's LICENSE.txt
 * only names MPL-2.0 and points at docs/LICENSE.MPL-2.0), and the licence of any code it
 * vendors that was bundled (noVNC's vendor/pako, MIT).
 */
async function licenses(inputs) {
  const packages = new Map();
  for (const input of inputs) {
    const match = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(input);
    if (!match) continue;
    const [, name, inside] = match;
    if (!packages.has(name)) packages.set(name, new Set());
    packages.get(name).add(dirname(inside));
  }
  const licenceIn = async (folder) =>
    (await readdir(folder).catch(() => [])).filter((f) => /^licen[cs]e/i.test(f)).sort()[0];
  let text = 'The ssp portal bundles these npm packages (versions pinned in portal/package-lock.json).\n';
  for (const name of [...packages.keys()].sort()) {
    const folder = join(here, 'node_modules', name);
    const meta = JSON.parse(await readFile(join(folder, 'package.json'), 'utf8'));
    const file = await licenceIn(folder);
    const body = file ? await readFile(join(folder, file), 'utf8') : `(${meta.license ?? 'no licence file'})`;
    text += `\n${'='.repeat(72)}\n${name} ${meta.version} (${meta.license ?? 'unknown'})\n${'='.repeat(72)}\n${body.trim()}\n`;
    const extras = [];
    if (meta.license) extras.push(join('docs', `LICENSE.${meta.license}`));
    // A licence file in a folder between a bundled file and the package's root (vendored code).
    for (const inside of packages.get(name)) {
      for (let sub = inside; sub !== '.' && sub !== ''; sub = dirname(sub)) {
        const own = await licenceIn(join(folder, sub));
        if (own) {
          extras.push(join(sub, own));
          break;
        }
      }
    }
    for (const extra of [...new Set(extras)].sort()) {
      const more = await readFile(join(folder, extra), 'utf8').catch(() => null);
      if (more !== null) text += `\n--- ${name}/${extra} ---\n${more.trim()}\n`;
    }
  }
  return text;
}
