// Users (admin): the list with use against quota (`GET /api/v1/users`), adding one
// (`POST /api/v1/users`), an invite link for them to set their password
// (`POST /api/v1/users/{name}/invite`), editing role and quotas and disabling and enabling
// (`PATCH /api/v1/users/{name}`), the GPU allowlist (`PUT /api/v1/users/{name}/gpu-allowlist`),
// and removing a departing user with everything they own
// (`DELETE /api/v1/users/{name}?purge=true`), after offering their containers' and home's
// exports for download.
import { useEffect, useRef, useState } from 'preact/hooks';

import { API, api, path } from '../api';
import { CodeBlock, ErrorBox, Field, Loading, Notice, PageTitle, TableWrap, TextField, useConfirm } from '../components';
import { dateTime, plural, timeLeft } from '../format';
import { usePoll } from '../hooks';
import { useSession } from '../session';
import type { Container, GpuAllowlist, InviteCreated, Quota, QuotaPatch, Role, User, UserCreate, UserUpdate } from '../types';
import { loadHome } from './Account';

const INVITE_HOURS = 72;

export function UsersPage() {
  const { session } = useSession();
  // A departing user's last steps (home, then the row) come without an event: looked at
  // every 30 s too.
  const users = usePoll(() => api<User[]>('GET', '/users'), [], 30000, ['users', 'containers', 'home']);
  const [dialog, ask] = useConfirm();
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  const [invite, setInvite] = useState<(InviteCreated & { user: string }) | null>(null);
  const [busy, setBusy] = useState('');
  const [editing, setEditing] = useState<string | null>(null);
  const [removing, setRemoving] = useState<User | null>(null);

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

  const removed = (user: string, answer: User | undefined) => {
    setRemoving(null);
    setNotice(
      answer?.departing
        ? `${user} is leaving: ${plural(answer.containers_left ?? 0, 'container')} still to delete; ${user} leaves the list once they are gone.`
        : `${user} is removed.`,
    );
    void users.reload();
  };

  const list = users.data ?? [];
  const edited = list.find((user) => user.name === editing);
  return (
    <>
      <PageTitle title="Users">Users</PageTitle>
      {dialog}
      {removing ? <RemoveUser user={removing} cancel={() => setRemoving(null)} removed={removed} /> : null}
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
      {edited ? (
        <EditUser
          key={edited.name}
          user={edited}
          close={() => setEditing(null)}
          saved={(note) => {
            setNotice(note);
            void users.reload();
          }}
        />
      ) : null}
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
                const leaving = user.departing === true;
                const working = busy.endsWith(` ${user.name}`) || leaving;
                return (
                  <tr key={user.name} class={user.disabled || leaving ? 'disabled' : ''}>
                    <th scope="row">{user.name}</th>
                    <td>{user.role}</td>
                    <td>
                      {leaving ? (
                        <span class="badge busy">leaving — {plural(user.containers_left ?? 0, 'container')} left</span>
                      ) : user.disabled ? (
                        <span class="badge bad">disabled</span>
                      ) : user.has_password ? (
                        'password'
                      ) : (
                        'no password yet'
                      )}
                    </td>
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
                        <button
                          type="button"
                          class="small"
                          disabled={working}
                          aria-label={`Edit ${user.name}`}
                          aria-expanded={editing === user.name}
                          aria-controls={editing === user.name ? 'edit-user' : undefined}
                          onClick={() => setEditing(editing === user.name ? null : user.name)}
                        >
                          Edit
                        </button>
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
                          aria-label={`Remove ${user.name}…`}
                          onClick={() => setRemoving(user)}
                        >
                          Remove…
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
            <TextField
              id="user-name"
              label="Name"
              hint="Lowercase letters, digits and -, starting with a letter."
              value={name}
              onValue={setName}
              required
              autoCapitalize="none"
              spellcheck={false}
            />
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

type QuotaForm = Record<keyof Quota, string>;

function quotaForm(quota: Quota): QuotaForm {
  return {
    max_containers: String(quota.max_containers),
    max_cpus: String(quota.max_cpus),
    max_memory: quota.max_memory,
    max_disk: quota.max_disk,
    max_gpus: String(quota.max_gpus),
  };
}

/** A comma- or space-separated list, without empty entries. */
function listOf(text: string): string[] {
  return text.split(/[\s,]+/).filter((item) => item !== '');
}

/** A user's role and quotas (only what changed is sent), and their GPU allowlist. */
function EditUser({ user, close, saved }: { user: User; close: () => void; saved: (note: string) => void }) {
  const [role, setRole] = useState<Role>(user.role);
  const [quota, setQuota] = useState<QuotaForm>(() => quotaForm(user.quota));
  const [indices, setIndices] = useState(() => (user.gpu_allowlist?.indices ?? []).join(', '));
  const [models, setModels] = useState(() => (user.gpu_allowlist?.models ?? []).join(', '));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [allowError, setAllowError] = useState<unknown>(null);
  const heading = useRef<HTMLHeadingElement>(null);

  // Opened from a row's button: the keyboard goes on from the form's heading.
  useEffect(() => heading.current?.focus(), []);

  const save = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const was = quotaForm(user.quota);
    const patch: QuotaPatch = {};
    if (quota.max_containers !== was.max_containers) patch.max_containers = Number(quota.max_containers);
    if (quota.max_cpus !== was.max_cpus) patch.max_cpus = Number(quota.max_cpus);
    if (quota.max_memory.trim() !== was.max_memory) patch.max_memory = quota.max_memory.trim();
    if (quota.max_disk.trim() !== was.max_disk) patch.max_disk = quota.max_disk.trim();
    if (quota.max_gpus !== was.max_gpus) patch.max_gpus = Number(quota.max_gpus);
    const body: UserUpdate = {};
    if (role !== user.role) body.role = role;
    if (Object.keys(patch).length) body.quota = patch;
    try {
      if (Object.keys(body).length) await api<User>('PATCH', `/users/${path(user.name)}`, body);
      saved(`${user.name}'s role and quotas are saved.`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const setAllowlist = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setAllowError(null);
    const body: GpuAllowlist = {};
    const wanted = listOf(indices);
    if (wanted.length) body.indices = wanted.map(Number);
    if (models.trim()) body.models = models.split(',').map((model) => model.trim()).filter((model) => model !== '');
    try {
      await api('PUT', `/users/${path(user.name)}/gpu-allowlist`, body);
      saved(
        body.indices || body.models
          ? `${user.name} may be given only the GPUs allowed now.`
          : `${user.name} may be given any GPU.`,
      );
    } catch (e) {
      setAllowError(e);
    } finally {
      setBusy(false);
    }
  };

  const quotaField = (field: keyof Quota, label: string, numeric: boolean, hint?: string) => (
    <Field id={`edit-${field}`} label={label} hint={hint}>
      <input
        id={`edit-${field}`}
        type={numeric ? 'number' : 'text'}
        min={numeric ? 0 : undefined}
        required
        inputMode={numeric ? 'numeric' : undefined}
        spellcheck={false}
        aria-describedby={hint ? `edit-${field}-hint` : undefined}
        value={quota[field]}
        onInput={(e) => setQuota({ ...quota, [field]: e.currentTarget.value })}
      />
    </Field>
  );

  return (
    <section id="edit-user" class="panel" aria-labelledby="edit-user-title">
      <h2 id="edit-user-title" tabIndex={-1} ref={heading}>
        Edit {user.name}
      </h2>
      <form class="grid-form" onSubmit={save}>
        <Field id="edit-role" label="Role">
          <select id="edit-role" value={role} onChange={(e) => setRole(e.currentTarget.value as Role)}>
            <option value="user">user</option>
            <option value="admin">admin</option>
          </select>
        </Field>
        {quotaField('max_containers', 'Most containers', true)}
        {quotaField('max_cpus', 'Most CPUs', true)}
        {quotaField('max_memory', 'Most memory', false, 'Like 64GiB.')}
        {quotaField('max_disk', 'Most disk', false, 'Like 500GiB; the home volume counts too.')}
        {quotaField('max_gpus', 'Most GPUs', true)}
        <div class="wide">
          <ErrorBox error={error} title="Not saved" />
          <div class="actions">
            <button type="submit" class="primary" disabled={busy}>
              Save role and quotas
            </button>
            <button type="button" onClick={close}>
              Close
            </button>
          </div>
        </div>
      </form>
      <form class="grid-form" onSubmit={setAllowlist}>
        <h3 class="wide">GPU allowlist</h3>
        <p class="wide muted">
          Which GPUs {user.name} may be given, as set now. Saving replaces it; both fields empty allow any GPU.
        </p>
        <TextField
          id="allow-indices"
          label="GPU numbers"
          hint="Like 0, 2; empty: any."
          value={indices}
          onValue={setIndices}
          spellcheck={false}
        />
        <TextField
          id="allow-models"
          label="GPU models"
          hint="Exact names, separated by commas; empty: any."
          value={models}
          onValue={setModels}
          spellcheck={false}
        />
        <div class="wide">
          <ErrorBox error={allowError} title="Allowlist not set" />
          <div class="actions">
            <button type="submit" disabled={busy}>
              Set the GPU allowlist
            </button>
          </div>
        </div>
      </form>
    </section>
  );
}

/**
 * Removing a departing user with everything they own: their containers (each with its
 * export to download first) and home volume are listed, and the user's name must be typed
 * to go on. The native `<dialog>` as `useConfirm`'s: focus stays inside, Escape cancels,
 * Cancel has the focus first.
 */
function RemoveUser({
  user,
  cancel,
  removed,
}: {
  user: User;
  cancel: () => void;
  removed: (user: string, answer: User | undefined) => void;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const returnFocus = useRef<HTMLElement | null>(null);
  const owned = usePoll(
    async () => {
      const [containers, home] = await Promise.all([
        api<Container[]>('GET', `/containers?owner=${encodeURIComponent(user.name)}`),
        loadHome(user.name),
      ]);
      return { containers, home };
    },
    [user.name],
    0,
  );
  const [typed, setTyped] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    returnFocus.current = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    dialog.current?.showModal();
    return () => returnFocus.current?.focus();
  }, []);

  const remove = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      // 202 with the user, still departing while its containers go; 204 when gone at once.
      const answer = await api<User | undefined>('DELETE', `/users/${path(user.name)}?purge=true`);
      removed(user.name, answer);
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };

  const containers = owned.data?.containers ?? [];
  const home = owned.data?.home;
  return (
    <dialog ref={dialog} class="confirm" aria-labelledby="remove-user-title" onCancel={cancel}>
      <form onSubmit={remove}>
        <h2 id="remove-user-title">Remove {user.name} and everything they own?</h2>
        <div class="confirm-body">
          <p>
            Their containers with their snapshots, their home volume, keys and tokens are deleted for good and their
            GPUs given back. Download what should be kept first.
          </p>
          <ErrorBox error={owned.error} title="What they own could not be listed" />
          {owned.loading ? (
            <Loading what={`what ${user.name} owns`} />
          ) : (
            <>
              <h3>Containers</h3>
              {containers.length === 0 ? (
                <p class="muted">None.</p>
              ) : (
                <ul class="plain owned">
                  {containers.map((c) => (
                    <li key={c.name}>
                      <span>
                        {c.name} <span class="muted">({c.status.toLowerCase()})</span>
                      </span>{' '}
                      <a
                        href={`${API}/containers/${path(c.owner, c.name)}/export`}
                        download
                        aria-label={`Download export of ${c.name}`}
                      >
                        Download export
                      </a>
                    </li>
                  ))}
                </ul>
              )}
              <h3>Home volume</h3>
              {home ? (
                <p>
                  {home.size} at <code>{home.path}</code>:{' '}
                  <a href={`${API}/users/${path(user.name)}/home/export`} download aria-label={`Download home of ${user.name}`}>
                    Download home
                  </a>
                </p>
              ) : (
                <p class="muted">None.</p>
              )}
            </>
          )}
          <Field id="remove-user-name" label={`Type ${user.name} to confirm`}>
            <input
              id="remove-user-name"
              autoCapitalize="none"
              autoComplete="off"
              spellcheck={false}
              value={typed}
              onInput={(e) => setTyped(e.currentTarget.value)}
            />
          </Field>
          <ErrorBox error={error} title="Not removed" />
        </div>
        <div class="actions">
          <button type="button" autoFocus onClick={cancel}>
            Cancel
          </button>
          <button type="submit" class="danger" disabled={busy || typed !== user.name}>
            Remove {user.name}
          </button>
        </div>
      </form>
    </dialog>
  );
}
