// The web portal in Debian's chromium, driven by playwright-core (run by
// crates/ssp/tests/portal.rs, which starts `ssp serve` on a private LXD, makes the users and
// their invitations, makes a host folder to share ($SSP_SHARE_DIR) and scripts the emulated
// GPUs' telemetry ($SSP_TELEMETRY, which this script rewrites later).
//
// alice: invitation → password → signed in → a container with a GPU → the terminal runs
// `echo $USER; nvidia-smi -L || ls /dev/nvidia*` → reload: the same shell (a variable set
// before is still set) → snapshot → restore → a snapshot schedule (still there after a
// reload) → published as an image → copied (the page goes to the copy) → her home volume
// made on the account page → delete. ada (admin): the GPU map shows alice holding GPU 0 at
// the scripted utilization, with its last hour; a new sample moves the open map (pushed by
// the live stream); the Images page lists alice's image; alice's memory quota edited (still
// there after a reload); the remove dialog lists alice's containers and home with their
// downloads; a host folder shared read-write, with what that changed on the host — and it
// appears on alice's open account page without a reload; alice's image deleted; at the end
// alice removed with everything she holds. Refusals: a cross-site POST, a websocket from a
// foreign origin, a reused ticket, bob asking for alice's terminal (the same answer as for a
// container that does not exist). axe-core on every page (no serious or critical
// violation), at 1280×800 and at a phone's width; screenshots in $SSP_SHOTS.

import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

import { auditor } from './axe.mjs';

// Injected through the DevTools protocol, which the page's CSP (no inline scripts) does not govern.

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const base = env('SSP_URL');
const shots = env('SSP_SHOTS');
const bobToken = env('SSP_BOB_TOKEN');
// The daemon's self-signed certificate, trusted by its key only (not "ignore all errors").
const spki = createHash('sha256')
  .update(new X509Certificate(readFileSync(env('SSP_CERT'))).publicKey.export({ type: 'spki', format: 'der' }))
  .digest('base64');

const step = (what) => console.log(`portal: ${what}`);

/** The emulated GPUs' next samples (written whole, then renamed, so the sampler never reads half). */
function scriptTelemetry(gpus) {
  const file = env('SSP_TELEMETRY');
  writeFileSync(`${file}.new`, JSON.stringify({ gpus }));
  renameSync(`${file}.new`, file);
}

/**
 * Waits until the page has loaded what it shows: no "Loading …" left. (Not the network's
 * idleness: the live stream keeps a request open for as long as the page is.)
 */
async function settled(page) {
  await page.waitForLoadState('load');
  await page.getByRole('status').filter({ hasText: /^Loading / }).first().waitFor({ state: 'detached' });
}

function fail(message) {
  throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
});
const pageErrors = [];

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(60_000);
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  return page;
}

const audit = auditor({ shots, step, fail });

/** The text the terminal shows (xterm's rows). */
async function terminalText(page) {
  const rows = page.locator('.xterm-rows');
  const count = await rows.count();
  if (count !== 1) return `(${count} terminals on the page)`;
  return rows.innerText();
}

async function waitForTerminal(page, pattern, what) {
  const deadline = Date.now() + 60_000;
  let seen = '';
  while (Date.now() < deadline) {
    seen = await terminalText(page).catch(() => '');
    if (pattern.test(seen)) return seen;
    await page.waitForTimeout(250);
  }
  await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
  const status = await page.locator('.terminal-bar [role=status]').first().innerText().catch(() => '?');
  fail(`the terminal never showed ${what} (status: ${status}); it shows:\n${seen}`);
}

async function type(page, line) {
  await page.locator('.xterm-helper-textarea').focus();
  await page.keyboard.type(line);
  await page.keyboard.press('Enter');
}

/**
 * Waits for `done` to show, or for an error box in `section` (the API's refusal, which is
 * then the failure).
 */
async function outcome(page, done, section, what, timeout = 180_000) {
  const refused = page.locator(`${section} [role=alert]`).first();
  await Promise.race([done.waitFor({ timeout }), refused.waitFor({ timeout })]);
  if (await refused.isVisible()) fail(`${what} was refused: ${await refused.innerText()}`);
}

async function acceptInvite(page, link, password) {
  await page.goto(link);
  await page.getByLabel('New password').fill(password);
  await page.getByLabel('The same password again').fill(password);
  await page.getByRole('button', { name: 'Set password and sign in' }).click();
  await page.getByRole('navigation', { name: 'Main' }).waitFor();
}

try {
  // alice accepts her invitation and is signed in.
  const alice = await newPage();
  await alice.goto(env('SSP_ALICE_INVITE'));
  await alice.getByLabel('New password').waitFor();
  await audit(alice, 'invite');
  await acceptInvite(alice, env('SSP_ALICE_INVITE'), 'correct horse battery staple');
  step('alice accepted her invitation and is signed in');

  // A container with GPU 0.
  await alice.goto(`${base}/#/`);
  await alice.getByRole('button', { name: 'New container' }).click();
  await alice.getByLabel('Name', { exact: true }).fill('dev');
  await alice.getByLabel('Image').selectOption('busybox');
  await alice.getByRole('checkbox', { name: /GPU 0/ }).check();
  await alice.getByRole('button', { name: 'Create' }).click();
  // dev's row, not its copy's (made later).
  const devRow = (page) => page.getByRole('row').filter({ has: page.getByRole('link', { name: 'dev', exact: true }) });
  await devRow(alice).getByText(/running/i).waitFor({ timeout: 180_000 });
  await audit(alice, 'containers');
  step('alice created dev with GPU 0');

  // The terminal, as alice, with the GPU.
  await alice.getByRole('link', { name: 'dev', exact: true }).first().click();
  await alice.getByRole('button', { name: 'Open a terminal' }).click();
  await alice.locator('.xterm-rows').waitFor();
  await type(alice, 'echo "user=$USER"; export KEEP=42; nvidia-smi -L 2>/dev/null || ls /dev/nvidia*');
  await waitForTerminal(alice, /user=alice/, 'user=alice');
  await waitForTerminal(alice, /\/dev\/nvidia0|GPU 0/, 'the GPU');
  await audit(alice, 'container-terminal');
  step('the terminal runs as alice and sees the GPU');

  // A reload: the same shell, its variable still set.
  await alice.reload();
  const reopen = alice.getByRole('button', { name: 'Open a terminal' });
  if (await reopen.isVisible().catch(() => false)) await reopen.click();
  await alice.locator('.xterm-rows').waitFor();
  // xterm paints only while it is on screen: the reloaded page starts at its top.
  await alice.locator('.xterm-rows').scrollIntoViewIfNeeded();
  await waitForTerminal(alice, /user=alice/, 'the scrollback after a reload');
  await type(alice, 'echo "keep=$KEEP"');
  await waitForTerminal(alice, /keep=42/, 'keep=42 (the same shell after a reload)');
  step('after a reload the page re-attached to the same shell');

  // Refusals. A cross-site POST with alice's cookie: refused.
  const crossSite = await alice.evaluate(async (url) => {
    const answer = await fetch(`${url}/api/v1/users/alice/tokens`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'no-csrf' }),
      credentials: 'include',
    });
    return answer.status;
  }, base);
  if (crossSite !== 403) fail(`a POST without the CSRF token answered ${crossSite}`);
  // A websocket with a ticket used twice, and one from another origin.
  // A ticket for alice's terminal, asked for by her page as the portal asks.
  const newTicket = () =>
    alice.evaluate(async (url) => {
      const session = await (await fetch(`${url}/api/v1/session`)).json();
      const answer = await fetch(`${url}/api/v1/containers/alice/dev/terminal`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf_token },
        body: JSON.stringify({ cols: 80, rows: 24 }),
      });
      return (await answer.json()).ticket;
    }, base);
  const ticket = await newTicket();
  const opens = (url) =>
    new Promise((resolve) => {
      const socket = new WebSocket(url);
      socket.onopen = () => {
        socket.close();
        resolve(true);
      };
      socket.onerror = () => resolve(false);
    });
  const wss = base.replace(/^https:/, 'wss:');
  const first = await alice.evaluate(opens, `${wss}/api/v1/terminal?ticket=${ticket}`);
  const second = await alice.evaluate(opens, `${wss}/api/v1/terminal?ticket=${ticket}`);
  if (!first || second) fail(`a ticket opened ${first}, then again ${second}`);
  const foreign = await newPage();
  await foreign.goto('data:text/html,<title>elsewhere</title>');
  const fresh = await newTicket();
  if (await foreign.evaluate(opens, `${wss}/api/v1/terminal?ticket=${fresh}`)) {
    fail('a page of another origin opened a terminal');
  }
  // bob asking for alice's terminal gets what a missing container gets.
  const asBob = (path) =>
    alice.evaluate(
      async ([url, token]) => {
        const answer = await fetch(url, {
          method: 'POST',
          credentials: 'omit',
          headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ cols: 80, rows: 24 }),
        });
        return `${answer.status} ${(await answer.text()).replaceAll('nosuch', 'NAME').replaceAll('dev', 'NAME')}`;
      },
      [`${base}${path}`, bobToken],
    );
  const foreignContainer = await asBob('/api/v1/containers/alice/dev/terminal');
  const missingContainer = await asBob('/api/v1/containers/alice/nosuch/terminal');
  if (!foreignContainer.startsWith('404') || foreignContainer !== missingContainer) {
    fail(`bob on alice's terminal: ${foreignContainer}; on a missing one: ${missingContainer}`);
  }
  step("refusals: cross-site POST, reused ticket, foreign origin, bob on alice's terminal");

  // Snapshot, restore, delete.
  await alice.getByLabel('Name (optional)').fill('before');
  await alice.getByRole('button', { name: 'Take a snapshot' }).click();
  await alice.getByRole('button', { name: 'Restore before' }).waitFor();
  await alice.getByRole('button', { name: 'Restore before' }).click();
  await alice.getByRole('dialog').getByRole('button', { name: /Restore/ }).click();
  // "Restored to before." — or the API's refusal, which is then the failure.
  const restored = alice.getByText(/restored to/i).first();
  const refused = alice.locator('section[aria-labelledby="snapshots-title"] [role=alert]').first();
  await Promise.race([restored.waitFor({ timeout: 300_000 }), refused.waitFor({ timeout: 300_000 })]);
  if (await refused.isVisible()) fail(`the restore was refused: ${await refused.innerText()}`);
  step('snapshot taken and restored');

  // A schedule: every 6 hours, the newest 3 kept; still shown after a reload.
  await alice.getByLabel('Take one every').fill('6');
  await alice.getByLabel('Unit').selectOption({ label: 'hours' });
  await alice.getByLabel('Keep the newest').fill('3');
  await alice.getByRole('button', { name: 'Set a schedule' }).click();
  await outcome(alice, alice.getByText('Schedule saved.'), '[aria-labelledby="schedule-title"]', 'the schedule');
  await alice.reload();
  await alice.getByText(/A snapshot every 6h; pruning keeps the newest 3/).waitFor();
  step('snapshot schedule set; it shows after a reload');

  // Published as an image, then copied: the page goes to the copy.
  const copySection = 'section[aria-labelledby="copy-title"]';
  await alice.getByLabel('Image name').fill('dev-image');
  await alice.getByRole('button', { name: 'Publish as image' }).click();
  await outcome(alice, alice.getByText(/Image alice\/dev-image published/), copySection, 'publishing dev');
  await alice.getByLabel('Name of the copy').fill('dev-copy');
  await alice.getByRole('button', { name: 'Copy', exact: true }).click();
  await outcome(alice, alice.getByRole('heading', { level: 1, name: /dev-copy/ }), copySection, 'copying dev');
  await audit(alice, 'container-copy');
  step('dev published as alice/dev-image and copied to dev-copy');

  // Her home volume, made on the account page; no share reaches her yet.
  await alice.goto(`${base}/#/account`);
  await alice.getByLabel('Size').fill('1GiB');
  await alice.getByRole('button', { name: 'Make my home volume' }).click();
  await outcome(alice, alice.getByText('Mounted at'), 'section[aria-labelledby="home-title"]', 'making the home volume');
  await alice.getByText('No shared folder reaches your containers.').waitFor();
  await audit(alice, 'account-alice');
  step('alice made her home volume on the account page');

  // The admin's GPU map: alice holds GPU 0 at the scripted 73 %.
  const ada = await newPage();
  await acceptInvite(ada, env('SSP_ADA_INVITE'), 'another long admin phrase');
  await ada.goto(`${base}/#/gpus`);
  const gpu0 = ada.getByRole('article', { name: /GPU 0/ });
  await gpu0.getByText('alice').first().waitFor();
  await gpu0.getByText('73%', { exact: true }).waitFor();
  await gpu0.getByRole('img', { name: /^Last hour: \d+% mean utilization, 73% peak/ }).waitFor();
  await audit(ada, 'gpus');
  step('the GPU map shows alice on GPU 0 at 73%, and its last hour');
  // The next samples move the map without a reload: the live stream pushes them (while it is
  // up, the page does not load on its own).
  await ada.locator('[data-live="up"]').waitFor();
  scriptTelemetry([{ index: 0, utilization: 41, memory_used: 2 ** 31 }, { index: 1, utilization: 0 }]);
  await gpu0.getByText('41%', { exact: true }).waitFor();
  step('a new sample moved GPU 0 to 41% on the open map');
  const pages = [
    ['#/users', 'users'],
    ['#/images', 'images'],
    ['#/shares', 'shares'],
    ['#/connect', 'connect'],
    ['#/account', 'account'],
    ['#/audit', 'audit'],
    ['#/system', 'system'],
  ];
  const auditPages = async (suffix) => {
    for (const [route, name] of pages) {
      await ada.goto(`${base}/${route}`);
      await ada.getByRole('main').waitFor();
      await settled(ada);
      await audit(ada, `${name}${suffix}`);
    }
  };

  // The Images page lists what alice published.
  await ada.goto(`${base}/#/images`);
  await ada.getByRole('row', { name: /alice\/dev-image/ }).waitFor();
  step("the Images page lists alice's published image");

  // alice's memory quota, edited; still there after a reload.
  await ada.goto(`${base}/#/users`);
  const aliceRow = () => ada.getByRole('row').filter({ has: ada.getByRole('rowheader', { name: 'alice', exact: true }) });
  await ada.getByRole('button', { name: 'Edit alice', exact: true }).click();
  await ada.getByLabel('Most memory').fill('48GiB');
  await audit(ada, 'users-edit');
  await ada.getByRole('button', { name: 'Save role and quotas' }).click();
  await outcome(ada, ada.getByText("alice's role and quotas are saved."), '#edit-user', "saving alice's quota");
  await ada.reload();
  await aliceRow().getByText(/\/ 48GiB/).waitFor();
  step("ada set alice's memory quota to 48GiB; it shows after a reload");

  // The remove dialog: alice's containers and home, each to download; cancelled.
  await ada.getByRole('button', { name: 'Remove alice…', exact: true }).click();
  const removeDialog = ada.getByRole('dialog', { name: /Remove alice/ });
  await removeDialog.getByRole('link', { name: 'Download export of dev-copy' }).waitFor();
  await removeDialog.getByRole('link', { name: 'Download home of alice' }).waitFor();
  const confirmRemove = removeDialog.getByRole('button', { name: 'Remove alice', exact: true });
  if (await confirmRemove.isEnabled()) fail('Remove alice was enabled before her name was typed');
  await audit(ada, 'users-remove');
  await removeDialog.getByRole('button', { name: 'Cancel' }).click();
  await removeDialog.waitFor({ state: 'detached' });
  step("the remove dialog lists alice's containers and home with their downloads (cancelled)");

  // A host folder shared read-write: the page shows what changed on the host.
  await ada.goto(`${base}/#/shares`);
  await ada.getByRole('button', { name: 'Share a folder' }).click();
  await ada.getByLabel('Name', { exact: true }).fill('lab');
  await ada.getByLabel('Host folder', { exact: true }).fill(env('SSP_SHARE_DIR'));
  await ada.getByLabel(/Read-write/).check();
  await ada.getByRole('button', { name: 'Share', exact: true }).click();
  await outcome(ada, ada.getByText('What changed on the host folder:'), '#add-share', 'sharing the folder', 60_000);
  await ada.getByRole('row', { name: /lab/ }).waitFor();
  await audit(ada, 'shares-added');
  await ada.goto(`${base}/#/account`);
  await ada.getByRole('row').filter({ hasText: '/shares/lab' }).filter({ hasText: 'read-write' }).waitFor();
  step('ada shared a folder read-write; it shows on her account page');
  // alice's account page, open all along, lists it as soon as it is made: the live stream
  // told it (her page does not load on its own while the stream is up).
  await alice.locator('[data-live="up"]').waitFor();
  await alice.getByRole('row').filter({ hasText: '/shares/lab' }).filter({ hasText: 'read-write' }).waitFor();
  await alice.getByText(/share_lab/).waitFor();
  step("the share appeared on alice's open account page, with its group")

  await auditPages('');

  // A phone's width.
  await alice.setViewportSize({ width: 390, height: 844 });
  await alice.goto(`${base}/#/`);
  await devRow(alice).waitFor();
  await audit(alice, 'containers-phone');
  await alice.goto(`${base}/#/containers/alice/dev-copy`);
  await alice.getByRole('heading', { name: 'Schedule and retention' }).waitFor();
  await settled(alice);
  await audit(alice, 'container-phone');
  await ada.setViewportSize({ width: 390, height: 844 });
  await auditPages('-phone');
  await ada.goto(`${base}/#/users`);
  await ada.getByRole('button', { name: 'Remove alice…', exact: true }).click();
  await ada.getByRole('link', { name: 'Download export of dev-copy' }).waitFor();
  await audit(ada, 'users-remove-phone');
  await ada.keyboard.press('Escape');
  await ada.getByRole('dialog').waitFor({ state: 'detached' });

  // The admin deletes alice's published image, confirmed.
  await ada.goto(`${base}/#/images`);
  await ada.getByRole('button', { name: 'Delete image alice/dev-image' }).click();
  await ada.getByRole('dialog').getByRole('button', { name: /Delete/ }).click();
  await ada.getByRole('row', { name: /alice\/dev-image/ }).waitFor({ state: 'detached' });
  step("ada deleted alice's published image");

  // Delete, confirmed.
  await alice.goto(`${base}/#/`);
  await alice.getByRole('button', { name: 'Delete dev', exact: true }).click();
  await alice.getByRole('dialog').getByRole('button', { name: /Delete/ }).click();
  await devRow(alice).waitFor({ state: 'detached', timeout: 180_000 });
  step('dev deleted');

  // alice leaves: the admin removes her with everything she holds (dev-copy and her home).
  await ada.setViewportSize({ width: 1280, height: 800 });
  await ada.goto(`${base}/#/users`);
  await ada.getByRole('button', { name: 'Remove alice…', exact: true }).click();
  const leaving = ada.getByRole('dialog', { name: /Remove alice/ });
  await leaving.getByLabel('Type alice to confirm').fill('alice');
  await leaving.getByRole('button', { name: 'Remove alice', exact: true }).click();
  await leaving.waitFor({ state: 'detached' });
  await aliceRow().getByText(/leaving/).waitFor();
  await audit(ada, 'users-leaving');
  await aliceRow().waitFor({ state: 'detached', timeout: 180_000 });
  step('ada removed alice with everything; she left the list');
  // Her own page, still open, is signed out: her sessions ended with her.
  await alice.reload();
  await alice.getByLabel('Password').waitFor();

  // Signed out: the page is back at sign-in.
  const signIn = await newPage();
  await signIn.goto(`${base}/`);
  await signIn.getByLabel('Password').waitFor();
  await audit(signIn, 'sign-in');

  if (pageErrors.length > 0) fail(`errors in the pages:\n${pageErrors.join('\n')}`);
  console.log('portal: all checks passed');
} finally {
  await browser.close();
}
