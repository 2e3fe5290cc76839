/// <reference types="node" />
// Unit tests of what the desktop pages compute: where the websocket goes, the desktop page's
// route, and what the container page says about the desktop and its session.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  canOpen,
  desktopHref,
  desktopPageOf,
  desktopSocketUrl,
  desktopStateText,
  disconnectText,
  forwardedPort,
  sessionText,
} from '../src/desktop';
import { parseRoute } from '../src/hooks';
import type { Desktop } from '../src/types';

function desktop(more: Partial<Desktop> = {}): Desktop {
  return {
    enabled: true,
    state: 'ready',
    problem: null,
    session: null,
    idle_timeout_secs: 3600,
    ssh_forward: 'ssh -N -L 5901:desktop:5901 -p 2222 alice+dev@host.example',
    ...more,
  };
}

test('the desktop websocket is on the page’s own origin, wss under https, the ticket escaped', () => {
  assert.equal(
    desktopSocketUrl({ protocol: 'https:', host: 'gpu1.lab:8443' }, 'abc-_123'),
    'wss://gpu1.lab:8443/api/v1/desktop?ticket=abc-_123',
  );
  assert.equal(desktopSocketUrl({ protocol: 'http:', host: 'localhost' }, 'a+b/c='), 'ws://localhost/api/v1/desktop?ticket=a%2Bb%2Fc%3D');
});

test('the desktop page has its own route, one escaped segment per part', () => {
  assert.equal(desktopHref('alice', 'dev'), '#/desktop/alice/dev');
  assert.deepEqual(desktopPageOf(parseRoute(desktopHref('alice', 'my dev'))), { owner: 'alice', name: 'my dev' });
  assert.equal(desktopPageOf(parseRoute('#/desktop/alice')), null);
  assert.equal(desktopPageOf(parseRoute('#/desktop/alice/dev/more')), null);
  assert.equal(desktopPageOf(parseRoute('#/containers/alice/dev')), null);
});

test('the desktop’s state reads as a sentence; failed says the problem', () => {
  assert.equal(desktopStateText(desktop({ enabled: false, state: 'off' })), 'Off.');
  assert.match(desktopStateText(desktop({ state: 'setting-up' })), /^Being set up/);
  assert.equal(desktopStateText(desktop({ enabled: false, state: 'setting-up' })), 'Being turned off.');
  assert.equal(desktopStateText(desktop()), 'Ready.');
  assert.equal(desktopStateText(desktop({ state: 'failed', problem: 'apt-get failed: no network' })), 'Failed: apt-get failed: no network');
  assert.equal(desktopStateText(desktop({ state: 'failed' })), 'Failed.');
});

test('the desktop opens only when enabled, ready and the container runs', () => {
  assert.equal(canOpen(desktop(), true), true);
  assert.equal(canOpen(desktop(), false), false);
  assert.equal(canOpen(desktop({ state: 'setting-up' }), true), false);
  assert.equal(canOpen(desktop({ enabled: false }), true), false);
});

test('the session says who watches, its memory, and when it ends for idleness', () => {
  assert.equal(sessionText(null, 3600), 'No session runs; opening the desktop starts one.');
  assert.equal(
    sessionText({ viewers: 2, memory: 512 * 2 ** 20, idle_secs: null, ends_in_secs: null }, 3600),
    'Running, 2 viewers, 512MiB of memory.',
  );
  assert.equal(
    sessionText({ viewers: 0, memory: null, idle_secs: 600, ends_in_secs: 3000 }, 3600),
    'Running, nobody watching for 10m. It ends in 50m unless someone opens it.',
  );
  assert.equal(
    sessionText({ viewers: 0, memory: null, idle_secs: null, ends_in_secs: null }, 3600),
    'Running, nobody watching. It ends after 1h without a viewer.',
  );
});

test('a closed connection says why, most telling reason first', () => {
  assert.match(disconnectText({ clean: true, endedHere: true, code: 1000 }), /^You ended the desktop session/);
  assert.equal(disconnectText({ clean: false, security: 'Authentication failed' }), 'The desktop refused the connection: Authentication failed');
  assert.equal(disconnectText({ clean: true, code: 4002, reason: 'the session ended' }), 'The connection was closed: the session ended');
  assert.match(disconnectText({ clean: true, code: 1000, sessionGone: true }), /^The desktop session ended/);
  assert.match(disconnectText({ clean: false, code: 1006, sessionGone: false }), /was lost\. The session keeps running/);
  assert.match(disconnectText({ clean: true, code: 1000, sessionGone: false }), /^The desktop closed the connection/);
});

test('the VNC viewer hint names the port the ssh command forwards', () => {
  assert.equal(forwardedPort('ssh -N -L 5901:desktop:5901 -p 2222 alice+dev@host.example'), '5901');
  assert.equal(forwardedPort('ssh -N -L 127.0.0.1:5999:desktop:5901 alice+dev@h'), '5999');
  assert.equal(forwardedPort('something else'), '5901');
});
