// "My containers": the list with state, addresses, limits and GPU leases
// (`GET /api/v1/containers`, `GET /api/v1/gpus` for lease ends), what the user holds against
// their quota (`GET /api/v1/users/{me}`), and the create form (`POST /api/v1/containers`,
// images from `GET /api/v1/images`, free GPUs from `GET /api/v1/gpus`).
import { useState } from 'preact/hooks';

import { api, path } from '../api';
import { ErrorBox, Field, Loading, Notice, PageTitle, StateBadge, TableWrap, TextField } from '../components';
import { useContainerActions } from '../containerActions';
import { timeLeft } from '../format';
import { href, useNow, usePoll } from '../hooks';
import { useSession } from '../session';
import type { Container, ContainerCreate, Gpu, GpuList, Image, User } from '../types';

/** When each (owner, container, GPU) lease ends, from the GPU list. */
export function leaseEnds(gpus: Gpu[] | undefined): Map<string, number | undefined> {
  const ends = new Map<string, number | undefined>();
  for (const gpu of gpus ?? []) {
    for (const holder of gpu.holders) {
      if (holder.container) ends.set(`${holder.owner}/${holder.container}/${gpu.index}`, holder.expires_at);
    }
  }
  return ends;
}

/** GPUs `user` could be given now: unheld (or shared) and not reserved for someone else. */
export function freeGpus(gpus: Gpu[] | undefined, user: string): Gpu[] {
  return (gpus ?? []).filter(
    (gpu) => (gpu.holders.length === 0 || gpu.shared) && (!gpu.reserved_for || gpu.reserved_for === user),
  );
}

export function GpuLeases({ container, ends }: { container: Container; ends: Map<string, number | undefined> }) {
  if (container.gpus.length === 0) return <span class="muted">none</span>;
  return (
    <ul class="plain">
      {container.gpus.map((index) => {
        const end = ends.get(`${container.owner}/${container.name}/${index}`);
        return (
          <li key={index}>
            GPU {index}
            {end ? <span class="muted"> · {timeLeft(end)}</span> : null}
          </li>
        );
      })}
    </ul>
  );
}

export function ContainersPage() {
  const { session } = useSession();
  const me = session.name;
  const admin = session.role === 'admin';
  const [everyone, setEveryone] = useState(false);
  const containers = usePoll(
    () => api<Container[]>('GET', everyone ? '/containers' : `/containers?owner=${encodeURIComponent(me)}`),
    [everyone, me],
    // What LXD reports without an event (an address from DHCP) is looked at now and then.
    60000,
    ['containers', 'gpus'],
  );
  const gpus = usePoll(() => api<GpuList>('GET', '/gpus'), [], 0, ['gpus', 'containers']);
  const user = usePoll(() => api<User>('GET', `/users/${path(me)}`), [me], 0, ['users', 'containers']);
  const [creating, setCreating] = useState(false);
  const [made, setMade] = useState('');
  useNow(30000);

  const reload = () => {
    void containers.reload();
    void gpus.reload();
    void user.reload();
  };
  const actions = useContainerActions(reload);
  const ends = leaseEnds(gpus.data?.gpus);
  const list = containers.data ?? [];

  return (
    <>
      <PageTitle title="Containers">{everyone ? 'All containers' : 'My containers'}</PageTitle>
      {user.data ? <QuotaLine user={user.data} /> : null}
      <div class="toolbar">
        <button
          type="button"
          class="primary"
          aria-expanded={creating}
          aria-controls="create-container"
          onClick={() => setCreating(!creating)}
        >
          {creating ? 'Close the form' : 'New container'}
        </button>
        {admin ? (
          <label class="check">
            <input type="checkbox" checked={everyone} onChange={(e) => setEveryone(e.currentTarget.checked)} />
            Show everyone's containers
          </label>
        ) : null}
      </div>
      {creating ? (
        <CreateForm
          me={me}
          gpus={gpus.data?.gpus}
          created={(name) => {
            setCreating(false);
            setMade(`${name} is being made: it starts on its own and shows “Running” here when it is ready.`);
            reload();
          }}
          refused={reload}
        />
      ) : null}
      {made ? <Notice kind="ok">{made}</Notice> : null}
      {actions.view}
      <ErrorBox error={containers.error} title="The list could not be loaded" />
      {containers.loading ? (
        <Loading what="containers" />
      ) : !containers.data ? null : list.length === 0 ? (
        <p>You have no containers yet. Make one with “New container”.</p>
      ) : (
        <TableWrap label="Containers">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">State</th>
                <th scope="col">Addresses</th>
                <th scope="col">CPUs</th>
                <th scope="col">Memory</th>
                <th scope="col">Disk</th>
                <th scope="col">GPUs</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.map((c) => {
                const label = everyone || c.owner !== me ? `${c.owner}/${c.name}` : c.name;
                return (
                  <tr key={`${c.owner}/${c.name}`}>
                    <th scope="row">
                      <a href={href('containers', c.owner, c.name)}>{label}</a>
                      <div class="muted small-text">{c.image}</div>
                    </th>
                    <td>
                      <StateBadge status={c.status} phase={c.phase} desired={c.desired_state} />
                      {c.problem ? (
                        <div class="problem" title={c.problem}>
                          {c.problem}
                        </div>
                      ) : null}
                    </td>
                    <td>{c.addresses.length ? c.addresses.join(', ') : <span class="muted">–</span>}</td>
                    <td>{c.cpus}</td>
                    <td>{c.memory}</td>
                    <td>{c.disk}</td>
                    <td>
                      <GpuLeases container={c} ends={ends} />
                    </td>
                    <td>{actions.buttons(c, label)}</td>
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

function QuotaLine({ user }: { user: User }) {
  const { usage, quota } = user;
  return (
    <p class="quota">
      You use {usage.containers} of {quota.max_containers} containers, {usage.cpus} of {quota.max_cpus} CPUs,{' '}
      {usage.memory} of {quota.max_memory} memory, {usage.disk} of {quota.max_disk} disk and {usage.gpus} of{' '}
      {quota.max_gpus} GPUs.
    </p>
  );
}

function randomKey(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function CreateForm({
  me,
  gpus,
  created,
  refused,
}: {
  me: string;
  gpus: Gpu[] | undefined;
  created: (name: string) => void;
  refused: () => void;
}) {
  const images = usePoll(() => api<Image[]>('GET', '/images'), [], 0);
  const [name, setName] = useState('');
  const [image, setImage] = useState('');
  const [cpus, setCpus] = useState('');
  const [memory, setMemory] = useState('');
  const [disk, setDisk] = useState('');
  const [picked, setPicked] = useState<number[]>([]);
  const [lease, setLease] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  // One key per intended container: a create retried after a lost answer makes no second one.
  const [idempotencyKey, setIdempotencyKey] = useState(randomKey);
  const free = freeGpus(gpus, me);

  const toggle = (index: number, on: boolean) =>
    setPicked(on ? [...picked, index].sort((a, b) => a - b) : picked.filter((i) => i !== index));

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const body: ContainerCreate & { idempotency_key: string } = { name: name.trim(), idempotency_key: idempotencyKey };
    if (image) body.image = image;
    if (cpus.trim()) body.cpus = Number(cpus);
    if (memory.trim()) body.memory = memory.trim();
    if (disk.trim()) body.disk = disk.trim();
    if (picked.length > 0) {
      body.gpus = { indices: picked };
      if (lease.trim()) body.gpus.for = lease.trim();
    }
    try {
      const container = await api<Container>('POST', '/containers', body);
      setIdempotencyKey(randomKey());
      created(container.name);
    } catch (e) {
      setError(e);
      refused();
    } finally {
      setBusy(false);
    }
  };

  return (
    <section id="create-container" class="panel" aria-labelledby="create-title">
      <h2 id="create-title">New container</h2>
      <form onSubmit={submit} class="grid-form">
        <TextField
          id="create-name"
          label="Name"
          hint="Lowercase letters, digits and -, starting with a letter."
          value={name}
          onValue={setName}
          required
          autoCapitalize="none"
          spellcheck={false}
        />
        <Field id="create-image" label="Image">
          <select id="create-image" value={image} onChange={(e) => setImage(e.currentTarget.value)}>
            <option value="">The default image</option>
            {(images.data ?? []).map((img) => (
              <option key={img.name} value={img.name}>
                {img.name}
                {img.description ? ` – ${img.description}` : ''}
              </option>
            ))}
          </select>
        </Field>
        <TextField
          id="create-cpus"
          label="CPUs"
          hint="Empty: the default."
          value={cpus}
          onValue={setCpus}
          type="number"
          min={1}
          step={1}
          inputMode="numeric"
        />
        <TextField
          id="create-memory"
          label="Memory"
          hint="Like 16GiB. Empty: the default."
          value={memory}
          onValue={setMemory}
          spellcheck={false}
        />
        <TextField
          id="create-disk"
          label="Disk"
          hint="Like 50GiB. Empty: the default."
          value={disk}
          onValue={setDisk}
          spellcheck={false}
        />
        <fieldset class="wide">
          <legend>GPUs</legend>
          {free.length === 0 ? (
            <p class="muted">No GPU is free for you right now; the GPUs page shows who holds them.</p>
          ) : (
            <ul class="plain checks">
              {free.map((gpu) => (
                <li key={gpu.index}>
                  <label class="check">
                    <input
                      type="checkbox"
                      checked={picked.includes(gpu.index)}
                      onChange={(e) => toggle(gpu.index, e.currentTarget.checked)}
                    />
                    GPU {gpu.index}: {gpu.model}, {gpu.memory}
                    {gpu.shared ? ' (shared)' : ''}
                    {gpu.reserved_for ? ' (reserved for you)' : ''}
                  </label>
                </li>
              ))}
            </ul>
          )}
          <TextField
            id="create-lease"
            label="For how long"
            hint="Like 8h or 2d; empty: until you give them back."
            value={lease}
            onValue={setLease}
            spellcheck={false}
            disabled={picked.length === 0}
          />
        </fieldset>
        <div class="wide">
          <ErrorBox error={error} title="Not created" />
          {images.error ? <ErrorBox error={images.error} title="The images could not be listed" /> : null}
          <div class="actions">
            <button type="submit" class="primary" disabled={busy}>
              {busy ? 'Creating…' : 'Create'}
            </button>
          </div>
        </div>
      </form>
    </section>
  );
}
