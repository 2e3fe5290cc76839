// The signed-in user's account: their home volume (`/api/v1/users/{me}/home`: see it, make
// it), the shared folders that reach their containers (`GET /api/v1/shares`), SSH public keys
// (`/api/v1/users/{me}/keys`), which ssp writes into every container's authorized_keys and
// the gateway accepts, and API tokens for the `ssp` command line (`/api/v1/users/{me}/tokens`),
// whose secret is shown once.
import { useState } from 'preact/hooks';

import { api, ApiError, path } from '../api';
import { CodeBlock, ErrorBox, Field, Loading, Notice, PageTitle, TableWrap, TextField, useConfirm } from '../components';
import { ago, dateTime } from '../format';
import { usePoll } from '../hooks';
import { useSession } from '../session';
import type { Home, Key, Share, Token, TokenCreated } from '../types';

export function AccountPage() {
  const { session } = useSession();
  return (
    <>
      <PageTitle title="Account">Account</PageTitle>
      <HomeSection me={session.name} />
      <SharesSection me={session.name} />
      <KeysSection me={session.name} />
      <TokensSection me={session.name} />
    </>
  );
}

/** `GET /api/v1/users/{user}/home`, where 404 means "no home volume". */
export function loadHome(user: string): Promise<Home | null> {
  return api<Home>('GET', `/users/${path(user)}/home`).catch((e: unknown) => {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  });
}

function HomeSection({ me }: { me: string }) {
  // A home being made or deleted moves on without an event: looked at now and then too.
  const home = usePoll(() => loadHome(me), [me], 15000, ['home']);
  const [size, setSize] = useState('10GiB');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const create = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api<Home>('PUT', `/users/${path(me)}/home`, { size: size.trim() });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
      void home.reload();
    }
  };

  const h = home.data;
  return (
    <section aria-labelledby="home-title">
      <h2 id="home-title">Home volume</h2>
      <ErrorBox error={home.error} title="Your home volume could not be read" />
      {home.loading ? (
        <Loading what="your home volume" />
      ) : h ? (
        <dl class="details">
          <dt>Size</dt>
          <dd>
            {h.used ? `${h.used} used of ${h.size}` : h.size} (the size counts against your disk quota)
          </dd>
          <dt>State</dt>
          <dd>{h.phase === 'ready' ? 'ready' : `${h.phase}…`}</dd>
          <dt>Mounted at</dt>
          <dd>
            <code>{h.path}</code> in each of your containers (one running before it was made sees it after a restart)
          </dd>
        </dl>
      ) : (
        <>
          <p>
            You have no home volume. One keeps your files apart from any container: it is mounted in all of them and
            stays when they are deleted.
          </p>
          <form class="inline-form" onSubmit={create}>
            <TextField
              id="home-size"
              label="Size"
              hint="Like 10GiB; counted against your disk quota."
              value={size}
              onValue={setSize}
              required
              spellcheck={false}
            />
            <button type="submit" class="primary" disabled={busy}>
              Make my home volume
            </button>
          </form>
        </>
      )}
      <ErrorBox error={error} title="Not made" />
    </section>
  );
}

function SharesSection({ me }: { me: string }) {
  const shares = usePoll(() => api<Share[]>('GET', '/shares'), [], 0, ['shares']);
  // An admin is shown every share; this section lists those that reach the caller's containers.
  const mine = (shares.data ?? []).filter((share) => share.users.length === 0 || share.users.includes(me));
  return (
    <section aria-labelledby="shares-title">
      <h2 id="shares-title">Shared folders</h2>
      <ErrorBox error={shares.error} title="Shares could not be listed" />
      {shares.loading ? (
        <Loading what="shared folders" />
      ) : shares.error ? null : mine.length === 0 ? (
        <p class="muted">No shared folder reaches your containers.</p>
      ) : (
        <TableWrap label="Shared folders">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">In your containers</th>
                <th scope="col">Access</th>
                <th scope="col">Group</th>
              </tr>
            </thead>
            <tbody>
              {mine.map((share) => (
                <tr key={share.name}>
                  <th scope="row">{share.name}</th>
                  <td>
                    <code class="break">{share.path}</code>
                  </td>
                  <td>{share.read_only ? 'read-only' : 'read-write'}</td>
                  <td>{share.group ? <code>{share.group.name}</code> : '–'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
    </section>
  );
}

function KeysSection({ me }: { me: string }) {
  const base = `/users/${path(me)}/keys`;
  const keys = usePoll(() => api<Key[]>('GET', base), [base], 0, ['keys']);
  const [dialog, ask] = useConfirm();
  const [line, setLine] = useState('');
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');

  const add = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setNotice('');
    try {
      const body: { public_key: string; name?: string } = { public_key: line.trim() };
      if (name.trim()) body.name = name.trim();
      const key = await api<Key>('POST', base, body);
      setNotice(`Key ${key.name} added (${key.fingerprint}). Your containers get it within moments.`);
      setLine('');
      setName('');
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
      void keys.reload();
    }
  };

  const remove = async (key: Key) => {
    const yes = await ask({
      title: `Remove key ${key.name}?`,
      body: <p>It stops working for the gateway and is taken out of your containers' authorized_keys.</p>,
      confirm: `Remove ${key.name}`,
      danger: true,
    });
    if (!yes) return;
    setError(null);
    setNotice('');
    try {
      await api('DELETE', `${base}/${path(key.name)}`);
      setNotice(`Key ${key.name} removed.`);
    } catch (e) {
      setError(e);
    } finally {
      void keys.reload();
    }
  };

  const list = keys.data ?? [];
  return (
    <section aria-labelledby="keys-title">
      {dialog}
      <h2 id="keys-title">SSH keys</h2>
      <ErrorBox error={keys.error} title="Keys could not be listed" />
      {keys.loading ? (
        <Loading what="keys" />
      ) : list.length === 0 ? (
        <p class="muted">No SSH keys yet.</p>
      ) : (
        <TableWrap label="SSH keys">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Fingerprint</th>
                <th scope="col">Added</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.map((key) => (
                <tr key={key.name}>
                  <th scope="row">{key.name}</th>
                  <td>
                    <code class="break">{key.fingerprint}</code>
                  </td>
                  <td>{dateTime(key.created_at)}</td>
                  <td>
                    <button type="button" class="small danger" aria-label={`Remove key ${key.name}`} onClick={() => remove(key)}>
                      Remove
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
      <form class="stack panel" onSubmit={add}>
        <h3>Add a key</h3>
        <Field id="key-line" label="Public key" hint="One line from a .pub file: ssh-ed25519 AAAA… you@laptop">
          <textarea
            id="key-line"
            rows={3}
            required
            spellcheck={false}
            aria-describedby="key-line-hint"
            value={line}
            onInput={(e) => setLine(e.currentTarget.value)}
          />
        </Field>
        <TextField
          id="key-name"
          label="Name (optional)"
          hint="Empty: the key's comment."
          value={name}
          onValue={setName}
          spellcheck={false}
        />
        <ErrorBox error={error} />
        {notice ? <Notice kind="ok">{notice}</Notice> : null}
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>
            Add key
          </button>
        </div>
      </form>
    </section>
  );
}

function TokensSection({ me }: { me: string }) {
  const base = `/users/${path(me)}/tokens`;
  const tokens = usePoll(() => api<Token[]>('GET', base), [base], 0, ['tokens']);
  const [dialog, ask] = useConfirm();
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [created, setCreated] = useState<TokenCreated | null>(null);
  const [notice, setNotice] = useState('');

  const create = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setNotice('');
    try {
      const body: { name?: string } = {};
      if (name.trim()) body.name = name.trim();
      setCreated(await api<TokenCreated>('POST', base, body));
      setName('');
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
      void tokens.reload();
    }
  };

  const revoke = async (token: Token) => {
    const yes = await ask({
      title: `Revoke token ${token.name}?`,
      body: <p>Programs using it are refused from now on.</p>,
      confirm: `Revoke ${token.name}`,
      danger: true,
    });
    if (!yes) return;
    setError(null);
    try {
      await api('DELETE', `${base}/${path(token.name)}`);
      setNotice(`Token ${token.name} revoked.`);
      if (created?.name === token.name) setCreated(null);
    } catch (e) {
      setError(e);
    } finally {
      void tokens.reload();
    }
  };

  const list = tokens.data ?? [];
  return (
    <section aria-labelledby="tokens-title">
      {dialog}
      <h2 id="tokens-title">API tokens</h2>
      <p>
        Tokens let the <code>ssp</code> command line act as you:{' '}
        <code>
          ssp login {location.origin} --token <var>TOKEN</var>
        </code>
        .
      </p>
      <ErrorBox error={tokens.error} title="Tokens could not be listed" />
      {tokens.loading ? (
        <Loading what="tokens" />
      ) : list.length === 0 ? (
        <p class="muted">No tokens.</p>
      ) : (
        <TableWrap label="API tokens">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Made</th>
                <th scope="col">Last used</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.map((token) => (
                <tr key={token.name}>
                  <th scope="row">{token.name}</th>
                  <td>{dateTime(token.created_at)}</td>
                  <td>{token.last_used_at ? ago(token.last_used_at) : 'never'}</td>
                  <td>
                    <button type="button" class="small danger" aria-label={`Revoke token ${token.name}`} onClick={() => revoke(token)}>
                      Revoke
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
      {created ? (
        <Notice kind="ok">
          <p>
            Token <strong>{created.name}</strong> made. Copy it now: ssp keeps only its hash and cannot show it again.
          </p>
          <CodeBlock label="Token" text={created.token} />
        </Notice>
      ) : null}
      {notice ? <Notice kind="ok">{notice}</Notice> : null}
      <form class="inline-form panel" onSubmit={create}>
        <TextField
          id="token-name"
          label="New token's name (optional)"
          hint="Like laptop; empty: token-N."
          value={name}
          onValue={setName}
          spellcheck={false}
        />
        <button type="submit" class="primary" disabled={busy}>
          Make a token
        </button>
      </form>
      <ErrorBox error={error} />
    </section>
  );
}
