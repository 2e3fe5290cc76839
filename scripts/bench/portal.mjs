// Portal idle-load benchmark (run by scripts/bench/portal; not a test).
//
// What open portal tabs cost the daemon, in one run, two ways:
//   live      this portal: one server-sent-events stream per tab (GET /api/v1/events); pages
//             load again when the stream names what changed, plus slow timers for numbers that
//             move without events (CPU and memory in use: 15 s on a container's page).
//   polling   the BASELINE: the portal as it was before the live stream (git revision
//             --baseline-rev, built from that revision's portal/ into a temporary folder and
//             served to the same browser in place of this one's files by request routing; the
//             API is the same daemon's), which polled every page every 5–15 s.
// Each way: TABS tabs of each of three pages — the container list (#/), a container's page
// (#/containers/USER/p1) and the GPU map (#/gpus) — signed in as the bench user, left alone
// for SECONDS after a 10 s settle. Counted: API requests the pages made (the event stream
// itself not counted as requests; it is one long response per tab), per tab and minute, by
// page; the daemon's CPU over the window (utime+stime of `ssp serve`, /proc/PID/stat). Both
// ways run on the same platform, one after the other; ratios are live / polling.
//
// Creates the user portalbench (password set, kept) and its container p1 (deleted at the end).
// Usage: scripts/bench/portal [--tabs 5] [--seconds 60] [--baseline-rev 2011b68] [--image debian-12]

import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join } from 'node:path';
import { connect } from 'node:tls';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '../..');
// The browser tests' pinned playwright-core (it drives Debian's chromium; no browser download).
const { chromium } = createRequire(join(repo, 'tests/browser/package.json'))('playwright-core');
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 && args[at + 1] ? args[at + 1] : fallback;
};
const tabs = Number(option('tabs', '5'));
const seconds = Number(option('seconds', '60'));
const baselineRev = option('baseline-rev', '2011b68');
const image = option('image', 'debian-12');
const user = 'portalbench';

const ssp = (...argv) => execFileSync('ssp', argv, { encoding: 'utf8' });
const log = (line) => console.log(line);

/** The daemon's pid and its CPU seconds so far (all threads). */
function daemonCpu() {
  const pid = execFileSync('pgrep', ['-o', '-f', 'ssp serve'], { encoding: 'utf8' }).trim().split('\n')[0];
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after "pid (comm) ".
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The API's address and its certificate's SPKI hash (for chromium), checked against `ssp info`. */
async function endpoint() {
  const info = JSON.parse(ssp('--json', 'info'));
  const config = readFileSync('/etc/ssp/ssp.toml', 'utf8');
  const port = /^\s*listen\s*=\s*"[^"]*:(\d+)"/m.exec(config.split('[api]')[1] ?? '')?.[1] ?? '8443';
  const cert = await new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: Number(port), rejectUnauthorized: false }, () => {
      const peer = socket.getPeerX509Certificate();
      socket.end();
      resolve(peer);
    });
    socket.on('error', reject);
  });
  const fingerprint = cert.fingerprint256.replaceAll(':', '').toLowerCase();
  const expected = String(info.tls_fingerprint ?? '').replaceAll(':', '').toLowerCase();
  if (!expected || fingerprint !== expected) throw new Error(`the API's certificate ${fingerprint} is not ssp's ${expected}`);
  const spki = createHash('sha256').update(new X509Certificate(cert.raw).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  return { base: `https://127.0.0.1:${port}`, spki };
}

/** Builds the baseline revision's portal into a temporary folder; returns its dist/. */
function buildBaseline() {
  const folder = mkdtempSync(join(tmpdir(), 'ssp-portal-baseline-'));
  const tree = join(folder, 'tree');
  execFileSync('git', ['-C', repo, 'worktree', 'add', '--detach', tree, baselineRev], { stdio: 'ignore' });
  try {
    cpSync(join(repo, 'portal/node_modules'), join(tree, 'portal/node_modules'), { recursive: true });
    execFileSync('node', ['build.mjs'], { cwd: join(tree, 'portal'), stdio: 'ignore' });
    const dist = join(folder, 'dist');
    cpSync(join(tree, 'portal/dist'), dist, { recursive: true });
    return { folder, dist };
  } finally {
    spawnSync('git', ['-C', repo, 'worktree', 'remove', '--force', tree], { stdio: 'ignore' });
  }
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.txt': 'text/plain' };

async function measure(way, base, spki, password, dist) {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', `--ignore-certificate-errors-spki-list=${spki}`],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    if (dist) {
      // The old portal's files in place of this one's; the API stays this daemon's.
      await context.route(/^https:\/\/[^/]+\/(assets\/[^?#]+)?(\?.*)?$/, (route) => {
        const path = new URL(route.request().url()).pathname;
        const file = join(dist, path === '/' ? 'index.html' : path.replace(/^\/assets\//, ''));
        if (!existsSync(file)) return route.fulfill({ status: 404, body: '' });
        return route.fulfill({ status: 200, contentType: TYPES[extname(file)] ?? 'application/octet-stream', body: readFileSync(file) });
      });
    }
    const first = await context.newPage();
    await first.goto(`${base}/`);
    await first.getByLabel('Name').fill(user);
    await first.getByLabel('Password').fill(password);
    await first.getByRole('button', { name: /Sign in/ }).click();
    await first.getByRole('heading', { level: 1 }).waitFor();
    const pages = { list: '#/', container: `#/containers/${user}/p1`, gpus: '#/gpus' };
    const counts = Object.fromEntries(Object.keys(pages).map((page) => [page, 0]));
    let counting = false;
    const opened = [];
    for (const [page, route] of Object.entries(pages)) {
      for (let i = 0; i < tabs; i += 1) {
        const tab = opened.length === 0 ? first : await context.newPage();
        tab.on('request', (request) => {
          const url = request.url();
          if (counting && url.includes('/api/v1/') && !url.includes('/api/v1/events')) counts[page] += 1;
        });
        await tab.goto(`${base}/${route}`);
        opened.push(tab);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    const cpuBefore = daemonCpu();
    counting = true;
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    counting = false;
    const cpu = daemonCpu() - cpuBefore;
    const perTabMinute = Object.fromEntries(
      Object.entries(counts).map(([page, n]) => [page, (n / tabs) * (60 / seconds)]),
    );
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    log(
      `${way.padEnd(8)} requests/tab/min: list ${perTabMinute.list.toFixed(1)}, container ${perTabMinute.container.toFixed(1)}, ` +
        `GPU map ${perTabMinute.gpus.toFixed(1)}; all ${3 * tabs} tabs: ${((total * 60) / seconds).toFixed(0)}/min; ` +
        `daemon CPU ${((cpu * 1000 * 60) / seconds).toFixed(0)} ms/min`,
    );
    return { total, cpu };
  } finally {
    await browser.close();
  }
}

const { base, spki } = await endpoint();
const password = randomBytes(12).toString('base64url');
if (spawnSync('ssp', ['user', 'show', user], { stdio: 'ignore' }).status !== 0) ssp('user', 'add', user, '--max-containers', '2');
execFileSync('ssp', ['user', 'set', user, '--password-stdin'], { input: `${password}\n` });
const existing = JSON.parse(ssp('--json', 'container', 'list', '--owner', user));
if (!existing.some((c) => c.name === 'p1')) ssp('container', 'create', `${user}/p1`, '--image', image);
log(`portal bench: ${tabs} tabs each of the container list, a container page and the GPU map; ${seconds} s idle each way`);
const baseline = buildBaseline();
try {
  const polling = await measure('polling', base, spki, password, baseline.dist);
  const live = await measure('live', base, spki, password, null);
  const ratio = (a, b) => (b > 0 ? (a / b).toFixed(2) : 'n/a');
  log(`live / polling: requests ${ratio(live.total, polling.total)}, daemon CPU ${ratio(live.cpu, polling.cpu)}`);
} finally {
  rmSync(baseline.folder, { recursive: true, force: true });
  spawnSync('ssp', ['container', 'delete', `${user}/p1`], { stdio: 'ignore' });
}
