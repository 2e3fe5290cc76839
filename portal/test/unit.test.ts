/// <reference types="node" />
// Unit tests of the portal's pure parts: what the pages compute from the API's answers.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { bytes, parseSize, span } from '../src/format';
import { aboutContainer, href, parseRoute } from '../src/hooks';
import { auditQuery } from '../src/pages/Audit';
import { freeGpus, leaseEnds } from '../src/pages/Containers';
import { knownHostsLines, listenPort, renderSshConfig } from '../src/sshConfig';
import type { Gpu } from '../src/types';

const gateway = { host: 'gpu1.lab', port: 2222, hostKey: 'ssh-ed25519 AAAAC3Nza' };
const containers = [
  { name: 'dev', sshdKey: 'ssh-ed25519 AAAAdev' },
  { name: 'web', sshdKey: undefined },
];

// The same expectations as crates/ssp/src/cmd/sshconfig.rs's tests: the portal's download
// and `ssp ssh-config` must say the same thing.
test('the ssh config has one host per container with the gateway key pinned, as ssp ssh-config', () => {
  const text = renderSshConfig(gateway, 'alice', containers, '~/.ssh/id_ed25519', '~/.ssh/known_hosts');
  assert.ok(text.includes('\nHost dev\n  HostName gpu1.lab\n  Port 2222\n  User alice+dev\n  HostKeyAlias ssp-gateway\n'), text);
  assert.ok(text.includes('\nHost web\n'), text);
  assert.ok(text.includes('\nHost dev-sshd\n  HostName dev\n  User alice\n  ProxyJump ssp-gateway-jump\n'), text);
  assert.ok(!text.includes('web-sshd'), text);
  assert.ok(text.includes('StrictHostKeyChecking yes') && !text.includes('StrictHostKeyChecking no'), text);
  assert.ok(text.includes('IdentityFile ~/.ssh/id_ed25519'), text);
  assert.equal(
    knownHostsLines(gateway, 'alice', containers),
    'ssp-gateway ssh-ed25519 AAAAC3Nza\nssp-alice-dev ssh-ed25519 AAAAdev\n',
  );
  assert.ok(!renderSshConfig(gateway, 'alice', containers, null, '~/.ssh/known_hosts').includes('IdentityFile'));
});

test('the gateway port comes from its listen address', () => {
  assert.equal(listenPort('0.0.0.0:2222'), 2222);
  assert.equal(listenPort('[::]:2022'), 2022);
  assert.equal(listenPort('nonsense'), 22);
});

test('routes are hash paths with one escaped segment per part', () => {
  assert.deepEqual(parseRoute(''), []);
  assert.deepEqual(parseRoute('#/'), []);
  assert.deepEqual(parseRoute('#/containers/alice/dev'), ['containers', 'alice', 'dev']);
  assert.deepEqual(parseRoute('#/invite/abc%2Fdef?x=1'), ['invite', 'abc/def']);
  assert.equal(href('containers', 'a/b', 'c d'), '#/containers/a%2Fb/c%20d');
  assert.deepEqual(parseRoute(href('containers', 'a/b', 'c d')), ['containers', 'a/b', 'c d']);
});

test('sizes and spans read as people write them', () => {
  assert.equal(bytes(0), '0B');
  assert.equal(bytes(1536), '1.5KiB');
  assert.equal(bytes(20 * 2 ** 30), '20GiB');
  assert.equal(parseSize('80GiB'), 80 * 2 ** 30);
  assert.equal(parseSize('512 MiB'), 512 * 2 ** 20);
  assert.ok(Number.isNaN(parseSize('lots')));
  assert.equal(span(40), '40s');
  assert.equal(span(3 * 3600 + 600), '3h 10m');
  assert.equal(span(2 * 86400 + 3 * 3600 + 59), '2d 3h');
});

function gpu(index: number, more: Partial<Gpu> = {}): Gpu {
  return {
    index,
    uuid: `GPU-${index}`,
    model: 'H100',
    memory: '80GiB',
    emulated: true,
    shared: false,
    holders: [],
    utilization: 0,
    memory_used: 0,
    processes: [],
    ...more,
  };
}

test('free GPUs are the unheld (or shared) ones not reserved for someone else', () => {
  const held = { owner: 'bob', container: 'train', granted_at: 1, expires_at: 99 };
  const gpus = [
    gpu(0),
    gpu(1, { holders: [held] }),
    gpu(2, { reserved_for: 'bob' }),
    gpu(3, { reserved_for: 'alice' }),
    gpu(4, { shared: true, holders: [held] }),
  ];
  assert.deepEqual(
    freeGpus(gpus, 'alice').map((g) => g.index),
    [0, 3, 4],
  );
  assert.equal(leaseEnds(gpus).get('bob/train/1'), 99);
  assert.equal(leaseEnds(gpus).get('alice/dev/0'), undefined);
});

test('the audit query leaves out empty filters and escapes the rest', () => {
  assert.equal(auditQuery({ actor: '', action: '', object: '' }), 'limit=200');
  assert.equal(
    auditQuery({ actor: ' alice ', action: 'session.', object: 'alice/dev&x' }, 50),
    'actor=alice&action=session.&object=alice%2Fdev%26x&limit=50',
  );
});

test("a container page hears its own changes and the reconciler's, not another container's", () => {
  const cases: [{ topic: string; owner?: string; name?: string }, boolean][] = [
    [{ topic: 'containers', owner: 'alice', name: 'dev' }, true],
    [{ topic: 'snapshots', owner: 'alice', name: 'dev' }, true],
    [{ topic: 'containers' }, true],
    [{ topic: 'containers', owner: 'alice', name: 'web' }, false],
    [{ topic: 'containers', owner: 'bob', name: 'dev' }, false],
    [{ topic: 'snapshots' }, false],
    [{ topic: 'keys', owner: 'alice' }, false],
  ];
  for (const [change, expected] of cases) {
    assert.equal(aboutContainer(change, 'alice', 'dev'), expected, JSON.stringify(change));
  }
});
