// A container's remote desktop in Debian's chromium, driven by playwright-core (run by
// crates/ssp/tests/desktop.rs, which starts `ssp serve` on a private LXD, makes the user and a
// RUNNING container from the debian-12-desktop image, and hands over a helper that runs a
// shell command inside the container as that user).
//
// The user signs in → the container page → Enable desktop → "ready" (packages installed, up
// to 3 min) → Open desktop (a new tab) → connected, and the framebuffer is drawn (≥ 64
// colours, none over 99 %: the XFCE panel and icons are drawn, not one flat colour) → a terminal started on the desktop
// (`xfce4-terminal --title ssp-typing`, found with xdotool) gets a click and typed keys, and
// the command typed there writes ~/typed.txt → the clipboard both ways (the panel's text is
// pasted in that terminal with Ctrl+Shift+V; a word double-clicked there appears in the panel)
// → the window shrinks and the remote screen follows (xdpyinfo) → the tab is closed and the
// desktop opened again: the same session (the same terminal window) → axe-core on the desktop
// page and on the container page (also at a phone's width, which must not scroll sideways) →
// End session: the session is gone. Refusals: a ticket used twice, a websocket from another
// origin. Screenshots in $SSP_SCREENSHOTS.
//
// Environment (as portal.mjs takes it):
//   SSP_URL          https://HOST:PORT of the daemon
//   SSP_CERT         its certificate (PEM), trusted by its key alone; optional for plain http
//   SSP_SCREENSHOTS  where screenshots go (or SSP_SHOTS, as portal.mjs names it)
//   SSP_OWNER        the container's owner, who signs in; SSP_CONTAINER its name
//   SSP_INVITE       an invitation link for the owner: accepted with a password of the
//                    script's own (SSP_PASSWORD, if set); or, without it,
//   SSP_PASSWORD     the owner's password, for the sign-in form
//   SSP_EXEC         a command that runs its one argument with a shell inside the container
//                    as the owner (HOME set) and prints its stdout; non-zero exit on failure

import { spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

import { auditor } from './axe.mjs';

// Injected through the DevTools protocol, which the page's CSP (no inline scripts) does not govern.

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const base = env('SSP_URL').replace(/\/$/, '');
const shots = env('SSP_SCREENSHOTS', process.env.SSP_SHOTS);
const owner = env('SSP_OWNER');
const user = owner;
const password = process.env.SSP_INVITE ? (process.env.SSP_PASSWORD ?? 'a desktop in the browser') : env('SSP_PASSWORD');
const container = env('SSP_CONTAINER');
const helper = env('SSP_EXEC');
mkdirSync(shots, { recursive: true });

/** How long enabling may take: the desktop's packages may be installed first. */
const READY_WITHIN_MS = 180_000;
/** How long a connection may take: the ticket starts the session when none runs. */
const CONNECTED_WITHIN_MS = 90_000;
/** The title of the terminal this script starts on the desktop. */
const TERMINAL = 'ssp-typing';

const step = (what) => console.log(`desktop: ${what}`);

/** A failure that ends the script (also from inside `until`, which retries other errors). */
class Failure extends Error {}

function fail(message) {
  throw new Failure(message);
}

/** Runs `command` (sh) inside the container as the user; its stdout. */
function execIn(command, { check = true } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(helper, [command], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (err += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0 || !check) resolve(out);
      else reject(new Error(`in the container, \`${command}\` exited ${code}: ${err.trim() || out.trim()}`));
    });
  });
}

/** Polls `probe` (async, returns a value or a falsy one) until it gives a value. */
async function until(what, probe, timeoutMs = 60_000, everyMs = 500) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      if (e instanceof Failure) throw e;
      last = e;
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  fail(`${what} did not happen within ${timeoutMs / 1000} s (last seen: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

const args = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
if (process.env.SSP_CERT) {
  // The daemon's self-signed certificate, trusted by its key only (not "ignore all errors").
  const spki = createHash('sha256')
    .update(new X509Certificate(readFileSync(process.env.SSP_CERT)).publicKey.export({ type: 'spki', format: 'der' }))
    .digest('base64');
  args.push(`--ignore-certificate-errors-spki-list=${spki}`);
}
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args });
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
// The clipboard panel also puts what the desktop copies on this computer's clipboard.
await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
const pageErrors = [];
context.on('page', (page) => {
  page.setDefaultTimeout(60_000);
  page.on('pageerror', (error) => pageErrors.push(String(error)));
});

const audit = auditor({ shots, step, fail });

async function signIn(page) {
  if (process.env.SSP_INVITE) {
    await page.goto(process.env.SSP_INVITE);
    await page.getByLabel('New password').fill(password);
    await page.getByLabel('The same password again').fill(password);
    await page.getByRole('button', { name: 'Set password and sign in' }).click();
  } else {
    await page.goto(`${base}/#/`);
    await page.getByLabel('Name').fill(user);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }
  await page.getByRole('navigation', { name: 'Main' }).waitFor();
}

const desktopSection = (page) => page.locator('section[aria-labelledby="desktop-title"]');

/** The desktop's state as the container page shows it (`data-desktop` on its State). */
async function shownState(page) {
  const state = desktopSection(page).locator('[data-desktop]');
  if ((await state.count()) === 0) return { state: '', text: '' };
  return { state: await state.getAttribute('data-desktop'), text: await state.innerText() };
}

/** Opens the desktop in a new tab from the container page; resolves once it is connected. */
async function openDesktop(page) {
  const [desk] = await Promise.all([
    context.waitForEvent('page'),
    desktopSection(page).getByRole('link', { name: 'Open desktop' }).click(),
  ]);
  await connected(desk, 'the desktop page');
  return desk;
}

async function connected(desk, what) {
  const root = desk.locator('[data-desktop-state]');
  await root.waitFor();
  const state = await until(
    `${what} connecting`,
    async () => {
      const now = await root.getAttribute('data-desktop-state');
      return now === 'connecting' ? '' : now;
    },
    CONNECTED_WITHIN_MS,
  );
  if (state !== 'connected') {
    fail(`${what} did not connect: ${await desk.locator('.desktop-ended').innerText().catch(() => state)}`);
  }
}

/** What the remote screen's canvas shows: its size, its number of colours, the commonest one's share. */
function canvasColours(desk) {
  return desk.evaluate(() => {
    const canvas = document.querySelector('[data-desktop-screen] canvas');
    if (!(canvas instanceof HTMLCanvasElement) || canvas.width === 0 || canvas.height === 0) return null;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const counts = new Map();
    for (let i = 0; i < data.length; i += 4) {
      const colour = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
      counts.set(colour, (counts.get(colour) ?? 0) + 1);
    }
    const top = Math.max(...counts.values());
    return { width: canvas.width, height: canvas.height, colours: counts.size, top: top / (data.length / 4) };
  });
}

/** Clicks the remote screen at desktop pixel (x, y) (no scaling: canvas pixels are the desktop's). */
async function clickRemote(desk, x, y, clickCount = 1) {
  const box = await desk.locator('[data-desktop-screen] canvas').boundingBox();
  if (!box) fail('the remote screen has no canvas to click');
  await desk.mouse.click(box.x + x, box.y + y, { clickCount });
}

/** The window's geometry on the remote screen (`xdotool getwindowgeometry --shell`). */
async function geometry(display, id) {
  const out = await execIn(`DISPLAY=${display} xdotool getwindowgeometry --shell ${id}`);
  const value = (key) => Number(new RegExp(`^${key}=(\\d+)`, 'm').exec(out)?.[1] ?? NaN);
  return { x: value('X'), y: value('Y'), width: value('WIDTH'), height: value('HEIGHT') };
}

/** Clicks the middle of the terminal window, which focuses it there and the canvas here. */
async function focusTerminal(desk, display, id) {
  await execIn(`DISPLAY=${display} xdotool windowactivate --sync ${id}`, { check: false });
  const g = await geometry(display, id);
  await clickRemote(desk, g.x + g.width / 2, g.y + g.height / 2);
  return g;
}

/** Types a line on the desktop as a person does, through the page's keyboard. */
async function typeLine(desk, line) {
  await desk.keyboard.type(line, { delay: 20 });
  await desk.keyboard.press('Enter');
}

async function remoteSize(display) {
  const out = await execIn(`DISPLAY=${display} xdpyinfo | grep dimensions`);
  const match = /(\d+)x(\d+) pixels/.exec(out);
  return match ? { width: Number(match[1]), height: Number(match[2]) } : null;
}

/** The size noVNC asks the remote desktop to take: its screen element's, in whole pixels. */
function screenSize(desk) {
  return desk.evaluate(() => {
    const box = document.querySelector('[data-desktop-screen]').getBoundingClientRect();
    return { width: Math.floor(box.width), height: Math.floor(box.height) };
  });
}

/** A ticket for the desktop, asked for as the page asks (session cookie, CSRF token). */
function newTicket(page) {
  return page.evaluate(
    async ([url, path]) => {
      const session = await (await fetch(`${url}/api/v1/session`)).json();
      const answer = await fetch(`${url}/api/v1/containers/${path}/desktop/ticket`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf_token },
        body: '{}',
      });
      if (!answer.ok) throw new Error(`ticket: ${answer.status} ${await answer.text()}`);
      return (await answer.json()).ticket;
    },
    [base, `${encodeURIComponent(owner)}/${encodeURIComponent(container)}`],
  );
}

/** Whether a websocket to `url` opens (from the page it runs in). */
const opens = (url) =>
  new Promise((resolve) => {
    const socket = new WebSocket(url, ['binary']);
    socket.onopen = () => {
      socket.close();
      resolve(true);
    };
    socket.onerror = () => resolve(false);
  });

try {
  const page = await context.newPage();
  await signIn(page);
  step(`${user} signed in`);

  // The container page: enable the desktop, wait until it is ready.
  await page.goto(`${base}/#/containers/${encodeURIComponent(owner)}/${encodeURIComponent(container)}`);
  await page.getByRole('heading', { name: 'Desktop', exact: true }).waitFor();
  await desktopSection(page).locator('[data-desktop]').waitFor();
  const enable = desktopSection(page).getByRole('button', { name: 'Enable desktop' });
  if (await enable.isVisible()) {
    await enable.click();
    step('Enable desktop clicked');
  } else {
    step(`the desktop was enabled already (${(await shownState(page)).text})`);
  }
  const started = Date.now();
  const ready = await until(
    'the desktop becoming ready',
    async () => {
      const shown = await shownState(page);
      if (shown.state === 'failed') fail(`setting up the desktop failed: ${shown.text}`);
      const refused = desktopSection(page).locator('[role=alert]');
      if (await refused.count()) fail(`enabling the desktop was refused: ${await refused.first().innerText()}`);
      return shown.state === 'ready' ? shown : null;
    },
    READY_WITHIN_MS,
    1000,
  );
  step(`the desktop is ready after ${Math.round((Date.now() - started) / 1000)} s: ${ready.text}`);
  const forward = await desktopSection(page).locator('.code-block pre').innerText();
  if (!/ssh .*-L \d+:/.test(forward)) fail(`the ssh tunnel command reads: ${forward}`);
  await audit(page, 'container-desktop');

  // Open it: a new tab, connected, the XFCE desktop drawn.
  let desk = await openDesktop(page);
  const drawn = await until(
    'a drawn desktop (≥ 64 colours, none over 99 %)',
    async () => {
      const seen = await canvasColours(desk);
      return seen && seen.colours >= 64 && seen.top <= 0.99 ? seen : null;
    },
    60_000,
  );
  step(`connected; the screen is ${drawn.width}×${drawn.height} with ${drawn.colours} colours (the commonest ${(drawn.top * 100).toFixed(1)} %)`);
  const frames = await desk.evaluate(() => window.__sspDesktop?.frames ?? -1);
  if (!(frames > 0)) fail(`window.__sspDesktop.frames is ${frames} after the desktop was drawn`);
  // The container page counts the viewer (it loads the session every 30 s, and at once when a ticket is issued).
  await desktopSection(page).getByText(/Running, 1 viewer\b/).waitFor({ timeout: 45_000 });
  step(`${frames} framebuffer updates so far; the container page counts 1 viewer`);

  // The desktop's X display, as the session wrote it (`:N`).
  const display = (await execIn(`cat /run/ssp-desktop/${user}/display`)).trim();
  if (!/^:\d+$/.test(display)) fail(`/run/ssp-desktop/${user}/display says ${JSON.stringify(display)}`);
  step(`the desktop is X display ${display}`);

  // A terminal on the desktop (bash without rc files, so no prompt retitles its window).
  await execIn(
    `DISPLAY=${display} setsid xfce4-terminal --disable-server --title ${TERMINAL} -x bash --norc </dev/null >/dev/null 2>&1 &`,
  );
  const windowId = await until(
    `a window titled ${TERMINAL}`,
    async () => (await execIn(`DISPLAY=${display} xdotool search --name ${TERMINAL}`, { check: false })).trim().split('\n')[0],
    30_000,
  );
  // Give it time to map and paint before it is clicked.
  await desk.waitForTimeout(1000);
  const where = await focusTerminal(desk, display, windowId);
  step(`terminal window ${windowId} at ${where.x},${where.y} (${where.width}×${where.height}) clicked`);
  await execIn('rm -f ~/typed.txt ~/clip.txt');
  await typeLine(desk, 'echo typed-in-desktop > ~/typed.txt');
  await until('~/typed.txt from the keys typed in the page', async () => (await execIn('cat ~/typed.txt', { check: false })).includes('typed-in-desktop'), 20_000);
  await desk.screenshot({ path: join(shots, 'desktop.png') });
  step('keys typed in the page reached the terminal on the desktop (~/typed.txt); screenshot desktop.png');

  // Clipboard, page → desktop: the panel's text, pasted in the terminal with Ctrl+Shift+V.
  const clipboardButton = desk.getByRole('button', { name: 'Clipboard' });
  await clipboardButton.click();
  const clipText = `from-the-browser-${Date.now()}`;
  await desk.getByRole('textbox', { name: 'Clipboard' }).fill(clipText);
  await focusTerminal(desk, display, windowId);
  // The terminal asks the desktop's clipboard, which asks the page: the text comes after a
  // round trip, so `cat` takes it whenever it comes, each Enter writing the line so far.
  await typeLine(desk, 'cat > ~/clip.txt');
  await desk.keyboard.press('Control+Shift+V');
  await until(
    'the pasted clipboard in ~/clip.txt',
    async () => {
      await desk.keyboard.press('Enter');
      return (await execIn('cat ~/clip.txt', { check: false })).split('\n').includes(clipText);
    },
    20_000,
    1000,
  );
  await desk.keyboard.press('Control+d');
  step('text put in the clipboard panel was pasted on the desktop');

  // Desktop → page: a word double-clicked in the terminal (the PRIMARY selection, which
  // TigerVNC sends as well as CLIPBOARD) shows in the panel. One long word fills the window,
  // so wherever the double-click lands it selects it.
  await typeLine(desk, "clear; printf 'remoteclip%.0s' $(seq 400)");
  await desk.waitForTimeout(1000);
  const g = await geometry(display, windowId);
  await clickRemote(desk, g.x + g.width / 2, g.y + g.height / 2, 2);
  const copied = await until(
    'the double-clicked word in the clipboard panel',
    async () => {
      const value = await desk.getByRole('textbox', { name: 'Clipboard' }).inputValue();
      return value.includes('remoteclipremoteclip') ? value : null;
    },
    20_000,
  );
  step(`a word selected on the desktop reached the clipboard panel (${copied.length} characters)`);
  await audit(desk, 'desktop-clipboard');
  await clipboardButton.click();

  // The window shrinks: the remote desktop follows.
  const before = await remoteSize(display);
  const wanted0 = await screenSize(desk);
  if (!before || before.width !== wanted0.width || before.height !== wanted0.height) {
    fail(`the remote screen is ${JSON.stringify(before)}, the page's ${JSON.stringify(wanted0)}`);
  }
  await desk.setViewportSize({ width: 1000, height: 700 });
  const wanted = await screenSize(desk);
  await until(
    `the remote screen at ${wanted.width}×${wanted.height}`,
    async () => {
      const now = await remoteSize(display);
      const seen = await canvasColours(desk);
      return now && now.width === wanted.width && now.height === wanted.height && seen?.width === wanted.width ? now : null;
    },
    20_000,
  );
  step(`the remote screen followed the window: ${before.width}×${before.height} → ${wanted.width}×${wanted.height}`);

  // Closing the tab leaves the session: opened again, the same terminal is there.
  await desk.close();
  desk = await openDesktop(page);
  const again = (await execIn(`DISPLAY=${display} xdotool search --name ${TERMINAL}`, { check: false })).trim().split('\n');
  if (!again.includes(windowId)) fail(`after reopening, windows titled ${TERMINAL}: ${again.join(', ') || 'none'} (was ${windowId})`);
  await until('a drawn desktop after reopening', async () => {
    const seen = await canvasColours(desk);
    return seen && seen.colours >= 8 ? seen : null;
  });
  step(`closed and opened again: the same session (terminal window ${windowId} still there)`);
  await audit(desk, 'desktop-page');

  // Refusals: a ticket used twice; a websocket from a page of another origin.
  const wss = base.replace(/^http/, 'ws');
  const ticket = await newTicket(page);
  const first = await page.evaluate(opens, `${wss}/api/v1/desktop?ticket=${ticket}`);
  const second = await page.evaluate(opens, `${wss}/api/v1/desktop?ticket=${ticket}`);
  if (!first || second) fail(`a desktop ticket opened ${first}, then again ${second}`);
  const foreign = await context.newPage();
  await foreign.goto('data:text/html,<title>elsewhere</title>');
  const fresh = await newTicket(page);
  if (await foreign.evaluate(opens, `${wss}/api/v1/desktop?ticket=${fresh}`)) fail('a page of another origin opened the desktop');
  await foreign.close();
  step('refusals: a reused ticket, a foreign origin');

  // The container page, checked with the session running, and at a phone's width.
  await page.reload();
  await desktopSection(page).getByRole('button', { name: 'End session' }).waitFor();
  await audit(page, 'container-desktop-session');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole('heading', { name: 'Desktop', exact: true }).scrollIntoViewIfNeeded();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  if (overflow > 0) fail(`the container page scrolls sideways by ${overflow} px at 390 px`);
  await audit(page, 'container-desktop-phone');
  await page.setViewportSize({ width: 1280, height: 800 });

  // End session, from the desktop page: confirmed, and the session is gone.
  await desk.getByRole('button', { name: 'End session' }).click();
  await desk.getByRole('dialog').getByRole('button', { name: 'End session' }).click();
  await until('the desktop page disconnected', async () => (await desk.locator('[data-desktop-state]').getAttribute('data-desktop-state')) === 'disconnected');
  await desk.getByText(/You ended the desktop session/).waitFor();
  await until(
    'the desktop session gone',
    async () => (await execIn(`DISPLAY=${display} xdotool search --name ${TERMINAL}`, { check: false })).trim() === '',
    30_000,
  );
  await page.reload();
  await desktopSection(page).getByText('No session runs; opening the desktop starts one.').waitFor();
  step('End session: the desktop logged out; the container page says no session runs');

  if (pageErrors.length > 0) fail(`errors in the pages:\n${pageErrors.join('\n')}`);
  console.log('desktop: all checks passed');
} catch (e) {
  // What each open page showed when it failed.
  for (const [i, open] of context.pages().entries()) {
    await open.screenshot({ path: join(shots, `desktop-failure-${i}.png`) }).catch(() => {});
  }
  throw e;
} finally {
  await browser.close();
}
