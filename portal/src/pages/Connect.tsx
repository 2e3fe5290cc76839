// "Connect": how to reach your containers with ssh, VS Code and PyCharm through ssp's SSH
// gateway. `GET /api/v1/info` gives the gateway's address and host key; the ssh config is
// the one `ssp ssh-config` writes, made here from your containers (`GET /api/v1/containers`).
import { useState } from 'preact/hooks';

import { api, path } from '../api';
import { CodeBlock, DownloadButton, ErrorBox, Field, Loading, Notice, PageTitle, TextField } from '../components';
import { href, usePoll } from '../hooks';
import { useSession } from '../session';
import { knownHostsLines, listenPort, renderSshConfig } from '../sshConfig';
import type { Container, Info, User } from '../types';

const KNOWN_HOSTS = '~/.ssh/ssp_known_hosts';

export function ConnectPage() {
  const { session } = useSession();
  const me = session.name;
  const info = usePoll(() => api<Info>('GET', '/info'), [], 0);
  const containers = usePoll(() => api<Container[]>('GET', `/containers?owner=${encodeURIComponent(me)}`), [me], 0, [
    'containers',
  ]);
  const user = usePoll(() => api<User>('GET', `/users/${path(me)}`), [me], 0, ['users']);
  const [host, setHost] = useState(() => location.hostname.replace(/^\[|\]$/g, ''));
  const [port, setPort] = useState('');
  const [identity, setIdentity] = useState('');
  const [chosen, setChosen] = useState('');

  if (info.loading) return <Loading what="the gateway's address" />;
  if (!info.data) return <ErrorBox error={info.error} />;
  const gateway = info.data.gateway;
  if (!gateway) {
    return (
      <>
        <PageTitle title="Connect">Connect to your containers</PageTitle>
        <Notice kind="warn">
          This ssp runs no SSH gateway (<code>[gateway] listen</code> in its configuration), so ssh, VS Code and PyCharm
          cannot reach containers through it. Ask your admin; the terminal on each container's page works without it.
        </Notice>
      </>
    );
  }
  const gatewayPort = Number(port) > 0 ? Number(port) : listenPort(gateway.listen);
  const address = { host: host.trim() || 'localhost', port: gatewayPort, hostKey: gateway.host_key };
  const list = [...(containers.data ?? [])].sort((a, b) => a.name.localeCompare(b.name));
  const entries = list.map((c) => ({ name: c.name, sshdKey: c.ssh_host_key }));
  const config = renderSshConfig(address, me, entries, identity.trim() || null, KNOWN_HOSTS);
  const knownHosts = knownHostsLines(address, me, entries);
  const example = chosen || list[0]?.name || 'CONTAINER';
  const portFlag = address.port === 22 ? '' : `-p ${address.port} `;

  return (
    <>
      <PageTitle title="Connect">Connect to your containers</PageTitle>
      <p>
        Every container is reachable through ssp's SSH gateway with your SSH key, as user{' '}
        <code>
          {me}+<var>container</var>
        </code>
        . The gateway's host key fingerprint is <code class="break">{gateway.host_key_fingerprint}</code>: if ssh shows
        another one, do not connect.
      </p>
      {user.data && user.data.keys === 0 ? (
        <Notice kind="warn">
          You have no SSH key registered yet: add your public key under <a href={href('account')}>Account</a>{' '}
          first.
        </Notice>
      ) : null}
      <ErrorBox error={containers.error} title="Your containers could not be listed" />

      <section aria-labelledby="address-title" class="panel">
        <h2 id="address-title">Where you reach the gateway</h2>
        <div class="grid-form">
          <TextField
            id="connect-host"
            label="Host name"
            hint="As your computer reaches this server."
            value={host}
            onValue={setHost}
            spellcheck={false}
          />
          <Field id="connect-port" label="Port" hint={`The gateway listens on ${gateway.listen}.`}>
            <input
              id="connect-port"
              type="number"
              min={1}
              max={65535}
              inputMode="numeric"
              placeholder={String(listenPort(gateway.listen))}
              aria-describedby="connect-port-hint"
              value={port}
              onInput={(e) => setPort(e.currentTarget.value)}
            />
          </Field>
          <TextField
            id="connect-identity"
            label="Private key file (optional)"
            hint="Like ~/.ssh/id_ed25519; empty: ssh's own choice."
            value={identity}
            onValue={setIdentity}
            spellcheck={false}
          />
        </div>
      </section>

      <section aria-labelledby="ssh-title">
        <h2 id="ssh-title">With ssh</h2>
        {list.length > 1 ? (
          <Field id="connect-container" label="Container">
            <select id="connect-container" value={example} onChange={(e) => setChosen(e.currentTarget.value)}>
              {list.map((c) => (
                <option key={c.name} value={c.name}>
                  {c.name}
                </option>
              ))}
            </select>
          </Field>
        ) : null}
        {list.length === 0 && !containers.loading ? (
          <p class="muted">You have no containers yet; the command for one named CONTAINER:</p>
        ) : null}
        <CodeBlock label="ssh command" text={`ssh ${portFlag}${me}+${example}@${address.host}`} />
        <p>
          The first time, ssh asks whether to trust the host key: compare the fingerprint above. With the config below,
          it never asks, and <code>ssh {example}</code>, <code>scp</code> and <code>rsync</code> work by name.
        </p>
      </section>

      <section aria-labelledby="config-title">
        <h2 id="config-title">An ssh config for all your containers</h2>
        <ol class="steps">
          <li>
            Save the config as <code>~/.ssh/ssp_config</code> and the host keys as <code>{KNOWN_HOSTS}</code> (on
            Windows: <code>C:\Users\<var>you</var>\.ssh\</code>).
          </li>
          <li>
            Add the line <code>Include ssp_config</code> at the top of <code>~/.ssh/config</code> (make the file if it
            does not exist).
          </li>
          <li>
            Run <code>ssh {example}</code>.
          </li>
        </ol>
        <div class="actions">
          <DownloadButton text={config} filename="ssp_config" label="Download ssp_config" />
          <DownloadButton text={knownHosts} filename="ssp_known_hosts" label="Download ssp_known_hosts" />
        </div>
        <CodeBlock label="ssh config" text={config} />
        <CodeBlock label="known_hosts lines" text={knownHosts} />
        <p class="muted">
          The same files come from the command line: <code>ssp ssh-config --known-hosts-file {KNOWN_HOSTS}</code> and{' '}
          <code>ssp ssh-config --known-hosts</code>. A new container needs a new download.
        </p>
      </section>

      <section aria-labelledby="vscode-title">
        <h2 id="vscode-title">With VS Code</h2>
        <ol class="steps">
          <li>Set up the ssh config above, and check that <code>ssh {example}</code> works in a terminal.</li>
          <li>
            In VS Code, install the <strong>Remote - SSH</strong> extension (by Microsoft) from the Extensions view.
          </li>
          <li>
            Open the Command Palette (<kbd>F1</kbd> or <kbd>Ctrl</kbd>+<kbd>Shift</kbd>+<kbd>P</kbd>), run{' '}
            <strong>Remote-SSH: Connect to Host…</strong> and pick <code>{example}</code> (VS Code reads{' '}
            <code>~/.ssh/config</code>, which includes <code>ssp_config</code>).
          </li>
          <li>
            When asked, choose <strong>Linux</strong> as the platform. VS Code installs its server in your home in the
            container; then <strong>File › Open Folder</strong> opens your files there.
          </li>
        </ol>
      </section>

      <section aria-labelledby="pycharm-title">
        <h2 id="pycharm-title">With PyCharm</h2>
        <ol class="steps">
          <li>Set up the ssh config above, and check that <code>ssh {example}</code> works in a terminal.</li>
          <li>
            <strong>Settings › Tools › SSH Configurations</strong>: add one with host <code>{address.host}</code>, port{' '}
            <code>{address.port}</code>, user name{' '}
            <code>
              {me}+{example}
            </code>{' '}
            and authentication type <strong>OpenSSH config and authentication agent</strong> (or <strong>Key pair</strong>{' '}
            with your private key). <strong>Test Connection</strong> shows the host key: accept it only if its fingerprint
            is <code class="break">{gateway.host_key_fingerprint}</code>.
          </li>
          <li>
            <strong>Settings › Project › Python Interpreter › Add Interpreter › On SSH</strong>: pick that SSH
            configuration, then the interpreter in the container (like <code>/usr/bin/python3</code> or your venv's) and
            the folder to sync your project to.
          </li>
          <li>
            Or, for a whole remote IDE: <strong>File › Remote Development › SSH</strong> (JetBrains Gateway), with the
            same host, port and user.
          </li>
        </ol>
      </section>
    </>
  );
}
