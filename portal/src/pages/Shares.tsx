// Shared host folders (admin): the list (`GET /api/v1/shares`), sharing a folder into
// everyone's or some users' containers (`POST /api/v1/shares`, whose answer says what it
// changed on the host folder: a read-write share's folder gets a group, mode and ACLs) and
// stopping a share (`DELETE /api/v1/shares/{name}`: unmounted everywhere, the folder stays).
import { useState } from 'preact/hooks';

import { api, path } from '../api';
import { ErrorBox, Loading, Notice, PageTitle, TableWrap, TextField, useConfirm } from '../components';
import { dateTime } from '../format';
import { usePoll } from '../hooks';
import type { Share, ShareCreate } from '../types';

export function SharesPage() {
  const shares = usePoll(() => api<Share[]>('GET', '/shares'), [], 0, ['shares']);
  const [dialog, ask] = useConfirm();
  const [busy, setBusy] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  const [added, setAdded] = useState<Share | null>(null);

  const remove = async (share: Share) => {
    const yes = await ask({
      title: `Stop sharing ${share.name}?`,
      body: (
        <p>
          <code>{share.path}</code> is unmounted from every container. The host folder <code>{share.host_path}</code>{' '}
          stays as it is, its group and permissions included.
        </p>
      ),
      confirm: `Stop sharing ${share.name}`,
      danger: true,
    });
    if (!yes) return;
    setBusy(share.name);
    setError(null);
    setNotice('');
    try {
      await api('DELETE', `/shares/${path(share.name)}`);
      setNotice(`${share.name} is no longer shared.`);
      if (added?.name === share.name) setAdded(null);
    } catch (e) {
      setError(e);
    } finally {
      setBusy('');
      void shares.reload();
    }
  };

  const list = shares.data ?? [];
  return (
    <>
      <PageTitle title="Shares">Shared folders</PageTitle>
      {dialog}
      <AddShare
        added={(share) => {
          setAdded(share);
          setNotice('');
          void shares.reload();
        }}
      />
      {added ? (
        <Notice kind="ok">
          <p>
            <strong>{added.name}</strong> is shared at <code>{added.path}</code>
            {added.read_only ? ' (read-only)' : ''}; containers get it within moments.
          </p>
          {added.host_changes && added.host_changes.length > 0 ? (
            <>
              <p>What changed on the host folder:</p>
              <ul>
                {added.host_changes.map((change) => (
                  <li key={change}>{change}</li>
                ))}
              </ul>
            </>
          ) : (
            <p>The host folder was not changed.</p>
          )}
        </Notice>
      ) : null}
      <ErrorBox error={error} />
      {notice ? <Notice kind="ok">{notice}</Notice> : null}
      <ErrorBox error={shares.error} title="Shares could not be listed" />
      {shares.loading ? (
        <Loading what="shares" />
      ) : list.length === 0 ? (
        <p class="muted">No folder is shared.</p>
      ) : (
        <TableWrap label="Shared folders">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Host folder</th>
                <th scope="col">In containers</th>
                <th scope="col">Access</th>
                <th scope="col">Users</th>
                <th scope="col">Group</th>
                <th scope="col">Added</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.map((share) => (
                <tr key={share.name}>
                  <th scope="row">{share.name}</th>
                  <td>
                    <code class="break">{share.host_path}</code>
                  </td>
                  <td>
                    <code class="break">{share.path}</code>
                  </td>
                  <td>{share.read_only ? 'read-only' : 'read-write'}</td>
                  <td>{share.users.length ? share.users.join(', ') : 'everyone'}</td>
                  <td>{share.group ? `${share.group.name} (gid ${share.group.inside_gid} inside)` : '–'}</td>
                  <td>{dateTime(share.created_at)}</td>
                  <td>
                    <button
                      type="button"
                      class="small danger"
                      disabled={busy !== ''}
                      aria-label={`Remove share ${share.name}`}
                      onClick={() => remove(share)}
                    >
                      Remove
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
    </>
  );
}

function AddShare({ added }: { added: (share: Share) => void }) {
  const [open, setOpen] = useState(false);
  const [name, setName] = useState('');
  const [hostPath, setHostPath] = useState('');
  const [inside, setInside] = useState('');
  const [readOnly, setReadOnly] = useState(true);
  const [users, setUsers] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const body: ShareCreate = { name: name.trim(), host_path: hostPath.trim(), read_only: readOnly };
    if (inside.trim()) body.path = inside.trim();
    const named = users.split(/[\s,]+/).filter((user) => user !== '');
    if (named.length) body.users = named;
    try {
      const share = await api<Share>('POST', '/shares', body);
      setName('');
      setHostPath('');
      setInside('');
      setUsers('');
      setOpen(false);
      added(share);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <div class="toolbar">
        <button type="button" class="primary" aria-expanded={open} aria-controls="add-share" onClick={() => setOpen(!open)}>
          {open ? 'Close the form' : 'Share a folder'}
        </button>
      </div>
      {open ? (
        <section id="add-share" class="panel" aria-labelledby="add-share-title">
          <h2 id="add-share-title">Share a host folder</h2>
          <form class="grid-form" onSubmit={submit}>
            <TextField
              id="share-name"
              label="Name"
              hint="Lowercase letters, digits and -."
              value={name}
              onValue={setName}
              required
              autoCapitalize="none"
              spellcheck={false}
            />
            <TextField
              id="share-host-path"
              label="Host folder"
              hint="An existing absolute path on this host."
              value={hostPath}
              onValue={setHostPath}
              required
              spellcheck={false}
            />
            <TextField
              id="share-path"
              label="Path in containers (optional)"
              hint="Empty: /shares/NAME."
              value={inside}
              onValue={setInside}
              spellcheck={false}
            />
            <TextField
              id="share-users"
              label="Users (optional)"
              hint="Names separated by commas; empty: everyone."
              value={users}
              onValue={setUsers}
              autoCapitalize="none"
              spellcheck={false}
            />
            <fieldset class="wide">
              <legend>Access</legend>
              <label class="check">
                <input type="radio" name="share-access" checked={readOnly} onChange={() => setReadOnly(true)} />
                Read-only
              </label>{' '}
              <label class="check">
                <input type="radio" name="share-access" checked={!readOnly} onChange={() => setReadOnly(false)} />
                Read-write (the folder is given to a new share group its users belong to)
              </label>
            </fieldset>
            <div class="wide">
              <ErrorBox error={error} title="Not shared" />
              <div class="actions">
                <button type="submit" class="primary" disabled={busy}>
                  Share
                </button>
              </div>
            </div>
          </form>
        </section>
      ) : null}
    </>
  );
}
