// Users (admin): the list with use against quota (`GET /api/v1/users`), adding one
// (`POST /api/v1/users`), an invite link for them to set their password
// (`POST /api/v1/users/{name}/invite`), disabling and enabling (`PATCH /api/v1/users/{name}`)
// and removing one who has no containers left (`DELETE /api/v1/users/{name}`).
import { useState } from 'preact/hooks';

import { api, path } from '../api';
import { CodeBlock, ErrorBox, Field, Loading, Notice, PageTitle, TableWrap, useConfirm } from '../components';
import { dateTime, timeLeft } from '../format';
import { usePoll } from '../hooks';
import { useSession } from '../session';
import type { InviteCreated, QuotaPatch, Role, User, UserCreate } from '../types';

const INVITE_HOURS = 72;

export function UsersPage() {
  const { session } = useSession();
  const users = usePoll(() => api<User[]>('GET', '/users'), [], 15000);
  const [dialog, ask] = useConfirm();
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  const [invite, setInvite] = useState<(InviteCreated & { user: string }) | null>(null);
  const [busy, setBusy] = useState('');

  const act = async (key: string, action: () => Promise<unknown>, done: string) => {
    setBusy(key);
    setError(null);
    setNotice('');
    try {
      await action();
      if (done) setNotice(done);
    } catch (e) {
      setError(e);
    } finally {
      setBusy('');
      void users.reload();
    }
  };

  const makeInvite = (user: User) =>
    act(
      `invite ${user.name}`,
      async () => {
        const made = await api<InviteCreated>('POST', `/users/${path(user.name)}/invite`, { valid_hours: INVITE_HOURS });
        setInvite({ ...made, user: user.name });
      },
      '',
    );

  const setDisabled = async (user: User, disabled: boolean) => {
    if (disabled) {
      const yes = await ask({
        title: `Disable ${user.name}?`,
        body: <p>Their sign-ins, tokens and SSH keys stop working at once; their containers keep running.</p>,
        confirm: `Disable ${user.name}`,
        danger: true,
      });
      if (!yes) return;
    }
    await act(
      `disable ${user.name}`,
      () => api('PATCH', `/users/${path(user.name)}`, { disabled }),
      `${user.name} is ${disabled ? 'disabled' : 'enabled again'}.`,
    );
  };

  const remove = async (user: User) => {
    const yes = await ask({
      title: `Remove ${user.name}?`,
      body: <p>The user, their keys and tokens are removed. ssp refuses while they still have containers.</p>,
      confirm: `Remove ${user.name}`,
      danger: true,
    });
    if (yes) await act(`remove ${user.name}`, () => api('DELETE', `/users/${path(user.name)}`), `${user.name} is removed.`);
  };

  const list = users.data ?? [];
  return (
    <>
      <PageTitle title="Users">Users</PageTitle>
      {dialog}
      <AddUser
        added={(name, inviteToo) => {
          setNotice(`${name} is added.`);
          void users.reload();
          if (inviteToo) {
            void act(
              `invite ${name}`,
              async () => {
                const made = await api<InviteCreated>('POST', `/users/${path(name)}/invite`, {
                  valid_hours: INVITE_HOURS,
                });
                setInvite({ ...made, user: name });
              },
              `${name} is added.`,
            );
          }
        }}
      />
      {invite ? (
        <Notice kind="ok">
          <p>
            Send this link to <strong>{invite.user}</strong>: it lets them set their password once, until{' '}
            {dateTime(invite.expires_at)} ({timeLeft(invite.expires_at)}).
          </p>
          <CodeBlock label="Invite link" text={invite.url || `${location.origin}/#/invite/${invite.token}`} />
        </Notice>
      ) : null}
      <ErrorBox error={error} />
      {notice ? <Notice kind="ok">{notice}</Notice> : null}
      <ErrorBox error={users.error} title="Users could not be listed" />
      {users.loading ? (
        <Loading what="users" />
      ) : (
        <TableWrap label="Users">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Role</th>
                <th scope="col">Sign-in</th>
                <th scope="col">Containers</th>
                <th scope="col">CPUs</th>
                <th scope="col">Memory</th>
                <th scope="col">Disk</th>
                <th scope="col">GPUs</th>
                <th scope="col">Keys</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.map((user) => {
                const self = user.name === session.name;
                const working = busy.endsWith(` ${user.name}`);
                return (
                  <tr key={user.name} class={user.disabled ? 'disabled' : ''}>
                    <th scope="row">{user.name}</th>
                    <td>{user.role}</td>
                    <td>{user.disabled ? <span class="badge bad">disabled</span> : user.has_password ? 'password' : 'no password yet'}</td>
                    <td>
                      {user.usage.containers} / {user.quota.max_containers}
                    </td>
                    <td>
                      {user.usage.cpus} / {user.quota.max_cpus}
                    </td>
                    <td>
                      {user.usage.memory} / {user.quota.max_memory}
                    </td>
                    <td>
                      {user.usage.disk} / {user.quota.max_disk}
                    </td>
                    <td>
                      {user.usage.gpus} / {user.quota.max_gpus}
                    </td>
                    <td>{user.keys}</td>
                    <td>
                      <div class="row-actions" role="group" aria-label={`Actions for ${user.name}`}>
                        <button type="button" class="small" disabled={working} aria-label={`Invite ${user.name}`} onClick={() => makeInvite(user)}>
                          Invite
                        </button>
                        {user.disabled ? (
                          <button type="button" class="small" disabled={working} aria-label={`Enable ${user.name}`} onClick={() => setDisabled(user, false)}>
                            Enable
                          </button>
                        ) : (
                          <button
                            type="button"
                            class="small"
                            disabled={working || self}
                            aria-label={`Disable ${user.name}`}
                            onClick={() => setDisabled(user, true)}
                          >
                            Disable
                          </button>
                        )}
                        <button
                          type="button"
                          class="small danger"
                          disabled={working || self}
                          aria-label={`Remove ${user.name}`}
                          onClick={() => remove(user)}
                        >
                          Remove
                        </button>
                      </div>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </TableWrap>
      )}
    </>
  );
}

function AddUser({ added }: { added: (name: string, invite: boolean) => void }) {
  const [open, setOpen] = useState(false);
  const [name, setName] = useState('');
  const [role, setRole] = useState<Role>('user');
  const [key, setKey] = useState('');
  const [quota, setQuota] = useState({ max_containers: '', max_cpus: '', max_memory: '', max_disk: '', max_gpus: '' });
  const [invite, setInvite] = useState(true);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const patch: QuotaPatch = {};
    if (quota.max_containers) patch.max_containers = Number(quota.max_containers);
    if (quota.max_cpus) patch.max_cpus = Number(quota.max_cpus);
    if (quota.max_memory.trim()) patch.max_memory = quota.max_memory.trim();
    if (quota.max_disk.trim()) patch.max_disk = quota.max_disk.trim();
    if (quota.max_gpus) patch.max_gpus = Number(quota.max_gpus);
    const body: UserCreate = { name: name.trim(), role, quota: patch };
    if (key.trim()) body.keys = [key.trim()];
    try {
      const user = await api<User>('POST', '/users', body);
      setName('');
      setKey('');
      setQuota({ max_containers: '', max_cpus: '', max_memory: '', max_disk: '', max_gpus: '' });
      setOpen(false);
      added(user.name, invite);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const quotaField = (field: keyof typeof quota, label: string, numeric: boolean, hint: string) => (
    <Field id={`user-${field}`} label={label} hint={hint}>
      <input
        id={`user-${field}`}
        type={numeric ? 'number' : 'text'}
        min={numeric ? 0 : undefined}
        inputMode={numeric ? 'numeric' : undefined}
        spellcheck={false}
        aria-describedby={`user-${field}-hint`}
        value={quota[field]}
        onInput={(e) => setQuota({ ...quota, [field]: e.currentTarget.value })}
      />
    </Field>
  );

  return (
    <>
      <div class="toolbar">
        <button type="button" class="primary" aria-expanded={open} aria-controls="add-user" onClick={() => setOpen(!open)}>
          {open ? 'Close the form' : 'Add a user'}
        </button>
      </div>
      {open ? (
        <section id="add-user" class="panel" aria-labelledby="add-user-title">
          <h2 id="add-user-title">Add a user</h2>
          <form class="grid-form" onSubmit={submit}>
            <Field id="user-name" label="Name" hint="Lowercase letters, digits and -, starting with a letter.">
              <input
                id="user-name"
                required
                autoCapitalize="none"
                spellcheck={false}
                aria-describedby="user-name-hint"
                value={name}
                onInput={(e) => setName(e.currentTarget.value)}
              />
            </Field>
            <Field id="user-role" label="Role">
              <select id="user-role" value={role} onChange={(e) => setRole(e.currentTarget.value as Role)}>
                <option value="user">user</option>
                <option value="admin">admin</option>
              </select>
            </Field>
            {quotaField('max_containers', 'Most containers', true, 'Empty: the default.')}
            {quotaField('max_cpus', 'Most CPUs', true, 'Empty: the default.')}
            {quotaField('max_memory', 'Most memory', false, 'Like 64GiB; empty: the default.')}
            {quotaField('max_disk', 'Most disk', false, 'Like 500GiB; empty: the default.')}
            {quotaField('max_gpus', 'Most GPUs', true, 'Empty: the default.')}
            <div class="wide">
              <Field id="user-key" label="SSH public key (optional)" hint="They can add keys themselves, too.">
                <textarea
                  id="user-key"
                  rows={2}
                  spellcheck={false}
                  aria-describedby="user-key-hint"
                  value={key}
                  onInput={(e) => setKey(e.currentTarget.value)}
                />
              </Field>
              <label class="check">
                <input type="checkbox" checked={invite} onChange={(e) => setInvite(e.currentTarget.checked)} />
                Make an invite link for them ({INVITE_HOURS} hours)
              </label>
              <ErrorBox error={error} title="Not added" />
              <div class="actions">
                <button type="submit" class="primary" disabled={busy}>
                  Add user
                </button>
              </div>
            </div>
          </form>
        </section>
      ) : null}
    </>
  );
}
