// One container (`#/containers/OWNER/NAME`): its details (`GET /api/v1/containers/{owner}/{name}`),
// actions, GPUs (attach and give back), the web terminal, its remote desktop
// (`…/desktop`: enable, disable, open, end the session, the ssh tunnel for a VNC viewer), copying it
// (`POST /api/v1/containers/{owner}/{name}/copy`) and publishing it as an image
// (`POST /api/v1/images`), snapshots (`/api/v1/containers/{owner}/{name}/snapshots`: list,
// take, restore, protect, delete) and their schedule (`…/schedule`: show, set, remove).
import { useEffect, useRef, useState } from 'preact/hooks';

import { api, ApiError, path } from '../api';
import { CodeBlock, ErrorBox, Field, Loading, Notice, PageTitle, StateBadge, TableWrap, TextField, useConfirm } from '../components';
import { containerPath, endSessionQuestion, useContainerActions } from '../containerActions';
import { canOpen, desktopHref, desktopStateText, endDesktopSession, forwardedPort, getDesktop, sessionText, setDesktop } from '../desktop';
import { ago, bytes, dateTime, span, timeLeft } from '../format';
import { aboutContainer, href, navigate, useAction, useNow, usePoll } from '../hooks';
import { useSession } from '../session';
import type { TerminalSession, TerminalStatus } from '../terminal';
import { recalled } from '../terminalStore';
import type { Container, GpuGrant, GpuList, Image, Snapshot, SnapshotSchedule } from '../types';
import { freeGpus, leaseEnds } from './Containers';

export function ContainerPage({ owner, name }: { owner: string; name: string }) {
  const { session } = useSession();
  // CPU and memory in use move without events; the rest loads when this container changes.
  const container = usePoll(() => api<Container>('GET', containerPath({ owner, name })), [owner, name], 15000, (change) =>
    aboutContainer(change, owner, name),
  );
  const gpus = usePoll(() => api<GpuList>('GET', '/gpus'), [], 0, ['gpus', 'containers']);
  useNow(30000);
  const actions = useContainerActions(
    () => {
      void container.reload();
      void gpus.reload();
    },
    () => navigate(),
  );
  const label = owner === session.name ? name : `${owner}/${name}`;

  if (container.loading) return <Loading what={label} />;
  const c = container.data;
  if (!c) {
    const missing = container.error instanceof ApiError && container.error.status === 404;
    return (
      <>
        <PageTitle title={label}>{label}</PageTitle>
        {missing ? <p>There is no container {label} (any more).</p> : <ErrorBox error={container.error} />}
        <p>
          <a href={href()}>Back to your containers</a>
        </p>
      </>
    );
  }
  const running = c.status === 'Running';
  const ends = leaseEnds(gpus.data?.gpus);

  return (
    <>
      <p class="crumbs">
        <a href={href()}>Containers</a> / {label}
      </p>
      <PageTitle title={label}>
        {label} <StateBadge status={c.status} phase={c.phase} desired={c.desired_state} />
      </PageTitle>
      {actions.view}
      <ErrorBox error={container.error} title="Could not refresh" />
      {actions.buttons(c, label)}

      <section aria-labelledby="details-title">
        <h2 id="details-title">Details</h2>
        <dl class="details">
          <dt>State</dt>
          <dd>
            {c.status}, kept {c.desired_state}
            {c.phase !== 'ready' ? ` (${c.phase})` : ''}
            {c.phase === 'ready' && !c.converged ? ' · being set up' : ''}
          </dd>
          {c.problem ? (
            <>
              <dt>Problem</dt>
              <dd class="problem-text">
                {c.problem}
                {c.problem_at ? <span class="muted"> ({ago(c.problem_at)})</span> : null}
                {c.next_try_at ? <span class="muted"> · tried again {dateTime(c.next_try_at)}</span> : null}
              </dd>
            </>
          ) : null}
          {c.waiting_for ? (
            <>
              <dt>Waiting for</dt>
              <dd>{c.waiting_for}</dd>
            </>
          ) : null}
          {c.pending ? (
            <>
              <dt>At its next start</dt>
              <dd>{c.pending}</dd>
            </>
          ) : null}
          <dt>Image</dt>
          <dd>{c.image}</dd>
          <dt>Addresses</dt>
          <dd>{c.addresses.length ? c.addresses.join(', ') : '–'}</dd>
          <dt>CPUs</dt>
          <dd>{c.cpus}</dd>
          <dt>Memory</dt>
          <dd>{c.memory}</dd>
          <dt>Disk</dt>
          <dd>{c.disk}</dd>
          <dt>GPU health</dt>
          <dd>{c.gpu_health ?? '–'}</dd>
          <dt>Created</dt>
          <dd>{dateTime(c.created_at)}</dd>
          <dt>SSH</dt>
          <dd>
            <code>
              {owner}+{name}
            </code>{' '}
            through the gateway: <a href={href('connect')}>how to connect</a>
          </dd>
        </dl>
      </section>

      <GpuSection container={c} gpus={gpus.data} ends={ends} changed={() => {
        void container.reload();
        void gpus.reload();
      }} />

      <TerminalSection owner={owner} name={name} running={running} />

      <DesktopSection owner={owner} name={name} running={running} />

      <CopySection container={c} admin={session.role === 'admin'} />

      <SnapshotSection container={c} changed={() => void container.reload()} />
    </>
  );
}

function GpuSection({
  container: c,
  gpus,
  ends,
  changed,
}: {
  container: Container;
  gpus: GpuList | undefined;
  ends: Map<string, number | undefined>;
  changed: () => void;
}) {
  const [dialog, ask] = useConfirm();
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [pick, setPick] = useState('');
  const [lease, setLease] = useState('');
  const free = freeGpus(gpus?.gpus, c.owner).filter((gpu) => !c.gpus.includes(gpu.index));
  const model = (index: number) => gpus?.gpus.find((gpu) => gpu.index === index)?.model ?? '';

  const detach = async (index: number) => {
    const yes = await ask({
      title: `Give back GPU ${index}?`,
      body: <p>Programs using it in {c.name} lose it at once; the container keeps running.</p>,
      confirm: `Give back GPU ${index}`,
      danger: true,
    });
    if (!yes) return;
    setBusy(true);
    setError(null);
    try {
      await api('DELETE', `${containerPath(c)}/gpus/${index}`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
      changed();
    }
  };

  const attach = async (event: Event) => {
    event.preventDefault();
    if (!pick) return;
    setBusy(true);
    setError(null);
    try {
      const body: { indices: number[]; for?: string } = { indices: [Number(pick)] };
      if (lease.trim()) body.for = lease.trim();
      await api<GpuGrant>('POST', `${containerPath(c)}/gpus`, body);
      setPick('');
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
      changed();
    }
  };

  return (
    <section aria-labelledby="gpus-title">
      {dialog}
      <h2 id="gpus-title">GPUs</h2>
      {c.gpus.length === 0 ? (
        <p class="muted">It holds no GPU.</p>
      ) : (
        <ul class="plain gpu-holds">
          {c.gpus.map((index, seen) => {
            const end = ends.get(`${c.owner}/${c.name}/${index}`);
            return (
              <li key={index}>
                <span>
                  GPU {index} {model(index) ? `(${model(index)})` : ''} – inside: GPU{seen}
                  {end ? ` · until ${dateTime(end)}, ${timeLeft(end)}` : ' · until given back'}
                </span>{' '}
                <button type="button" class="small" disabled={busy} onClick={() => detach(index)}>
                  Give back GPU {index}
                </button>
              </li>
            );
          })}
        </ul>
      )}
      {free.length > 0 ? (
        <form class="inline-form" onSubmit={attach}>
          <Field id="attach-gpu" label="Add a GPU">
            <select id="attach-gpu" value={pick} onChange={(e) => setPick(e.currentTarget.value)}>
              <option value="">Choose a free GPU</option>
              {free.map((gpu) => (
                <option key={gpu.index} value={String(gpu.index)}>
                  GPU {gpu.index}: {gpu.model}, {gpu.memory}
                </option>
              ))}
            </select>
          </Field>
          <TextField
            id="attach-lease"
            label="For how long"
            hint="Like 8h; empty: until given back."
            value={lease}
            onValue={setLease}
            spellcheck={false}
          />
          <button type="submit" disabled={busy || !pick}>
            Add GPU
          </button>
        </form>
      ) : null}
      <ErrorBox error={error} />
    </section>
  );
}

function CopySection({ container: c, admin }: { container: Container; admin: boolean }) {
  const [copyName, setCopyName] = useState('');
  const [copyOwner, setCopyOwner] = useState('');
  const [imageName, setImageName] = useState('');
  const [busy, setBusy] = useState<'' | 'copy' | 'publish'>('');
  const [copyError, setCopyError] = useState<unknown>(null);
  const [publishError, setPublishError] = useState<unknown>(null);
  const [published, setPublished] = useState<Image | null>(null);
  // The server refuses both until the container is made; say so instead of offering them.
  const ready = c.phase === 'ready';

  const copy = async (event: Event) => {
    event.preventDefault();
    setBusy('copy');
    setCopyError(null);
    try {
      const body: { name: string; owner?: string } = { name: copyName.trim() };
      if (copyOwner.trim()) body.owner = copyOwner.trim();
      const made = await api<Container>('POST', `${containerPath(c)}/copy`, body);
      navigate('containers', made.owner, made.name);
    } catch (e) {
      setCopyError(e);
    } finally {
      setBusy('');
    }
  };

  const publish = async (event: Event) => {
    event.preventDefault();
    setBusy('publish');
    setPublishError(null);
    setPublished(null);
    try {
      const image = await api<Image>('POST', '/images', { container: `${c.owner}/${c.name}`, name: imageName.trim() });
      setPublished(image);
      setImageName('');
    } catch (e) {
      setPublishError(e);
    } finally {
      setBusy('');
    }
  };

  return (
    <section aria-labelledby="copy-title">
      <h2 id="copy-title">Copy and publish</h2>
      {!ready ? <p class="muted">Copying and publishing are possible once the container is made.</p> : null}
      <form class="inline-form" onSubmit={copy}>
        <TextField
          id="copy-name"
          label="Name of the copy"
          hint="A new container with these files (not the snapshots) and limits."
          value={copyName}
          onValue={setCopyName}
          required
          autoCapitalize="none"
          spellcheck={false}
        />
        {admin ? (
          <Field id="copy-owner" label="Owner of the copy (optional)" hint={`Empty: ${c.owner}.`}>
            <input
              id="copy-owner"
              autoCapitalize="none"
              spellcheck={false}
              aria-describedby="copy-owner-hint"
              value={copyOwner}
              onInput={(e) => setCopyOwner(e.currentTarget.value)}
            />
          </Field>
        ) : null}
        <button type="submit" disabled={!ready || busy !== ''}>
          {busy === 'copy' ? 'Copying…' : 'Copy'}
        </button>
      </form>
      <ErrorBox error={copyError} title="Not copied" />
      <form class="inline-form" onSubmit={publish}>
        <TextField
          id="image-name"
          label="Image name"
          hint="Lowercase letters, digits, - and .; new containers can start from it."
          value={imageName}
          onValue={setImageName}
          required
          autoCapitalize="none"
          spellcheck={false}
        />
        <button type="submit" disabled={!ready || busy !== ''}>
          {busy === 'publish' ? 'Publishing…' : 'Publish as image'}
        </button>
      </form>
      <ErrorBox error={publishError} title="Not published" />
      {published ? (
        <Notice kind="ok">
          Image <strong>{published.name}</strong> published ({bytes(published.size)}): choose it as the image of a new
          container. <a href={href('images')}>All images</a>
        </Notice>
      ) : null}
    </section>
  );
}

function statusText(status: TerminalStatus | null): string {
  if (!status) return '';
  switch (status.kind) {
    case 'connecting':
      return 'Connecting…';
    case 'open':
      return 'Connected.';
    case 'reconnecting':
      return `Connection lost; trying again in ${status.inSecs} s. The shell keeps running.`;
    case 'exited':
      return `The shell ended (exit code ${status.code}).`;
    case 'failed':
      return status.message;
  }
}

function TerminalSection({ owner, name, running }: { owner: string; name: string; running: boolean }) {
  // A shell this tab attached to before (a reload) is attached again at once.
  const [open, setOpen] = useState(() => recalled(owner, name) !== null);
  const [status, setStatus] = useState<TerminalStatus | null>(null);
  const [readerMode, setReaderMode] = useState(false);
  const element = useRef<HTMLDivElement>(null);
  const session = useRef<TerminalSession | null>(null);
  const before = useRef<HTMLButtonElement>(null);
  const after = useRef<HTMLButtonElement>(null);
  const [loadError, setLoadError] = useState<unknown>(null);

  useEffect(() => {
    if (!open || !running || !element.current) return undefined;
    let cancelled = false;
    const target = element.current;
    import('../terminal')
      .then(({ TerminalSession: Session }) => {
        if (cancelled) return;
        session.current = new Session({
          owner,
          name,
          element: target,
          onStatus: setStatus,
          leave: (direction) => (direction > 0 ? after.current : before.current)?.focus(),
        });
        session.current.setScreenReaderMode(readerMode);
        session.current.focus();
      })
      .catch((e) => setLoadError(e));
    return () => {
      cancelled = true;
      session.current?.dispose();
      session.current = null;
    };
    // The reader mode is applied below without a new terminal.
  }, [open, running, owner, name]);

  useEffect(() => {
    session.current?.setScreenReaderMode(readerMode);
  }, [readerMode]);

  return (
    <section aria-labelledby="terminal-title" class="terminal-section">
      <h2 id="terminal-title">Terminal</h2>
      {!running ? (
        <p class="muted">The terminal opens once the container runs.</p>
      ) : !open ? (
        <p>
          <button type="button" class="primary" onClick={() => setOpen(true)}>
            Open a terminal
          </button>{' '}
          <span class="muted">A shell as you in {name}; it keeps running for a while if you reload or lose the connection.</span>
        </p>
      ) : (
        <>
          <div class="terminal-bar">
            <button type="button" class="small" ref={before} onClick={() => session.current?.focus()}>
              Focus the terminal
            </button>
            <label class="check">
              <input type="checkbox" checked={readerMode} onChange={(e) => setReaderMode(e.currentTarget.checked)} />
              Screen reader mode
            </label>
            <span class="muted" role="status">
              {statusText(status)}
            </span>
          </div>
          <div
            class="terminal"
            ref={element}
            role="group"
            aria-label={`Terminal in ${name}. F6 moves the focus out of it.`}
          />
          <div class="terminal-bar">
            <small class="muted">The terminal takes every key, Tab included: press F6 (Shift+F6: back) to leave it.</small>
            {status && (status.kind === 'failed' || status.kind === 'exited') ? (
              <button type="button" class="small" ref={after} onClick={() => session.current?.reconnect()}>
                {status.kind === 'exited' ? 'Start a new shell' : 'Connect again'}
              </button>
            ) : (
              <button
                type="button"
                class="small"
                ref={after}
                onClick={() => {
                  setOpen(false);
                  setStatus(null);
                }}
              >
                Close the terminal
              </button>
            )}
          </div>
          <ErrorBox error={loadError} />
        </>
      )}
    </section>
  );
}

function DesktopSection({ owner, name, running }: { owner: string; name: string; running: boolean }) {
  // The session's viewers, memory and idle time move without events; each answer asks the
  // container (an exec), so they are looked at every 30 s, not every 15.
  const desktop = usePoll(() => getDesktop(owner, name), [owner, name], 30000, (change) => aboutContainer(change, owner, name));
  const [dialog, ask] = useConfirm();
  const action = useAction(() => void desktop.reload());
  const busy = action.busy !== '';
  const d = desktop.data;

  const enable = () => action.run('enable', () => setDesktop(owner, name, true), 'The desktop is being set up.');

  const disable = async () => {
    const yes = await ask({
      title: `Disable the desktop of ${name}?`,
      body: <p>This stops its desktop sessions; installed packages and your files stay.</p>,
      confirm: 'Disable desktop',
      danger: true,
    });
    if (yes) await action.run('disable', () => setDesktop(owner, name, false), 'The desktop is off.');
  };

  const end = async () => {
    const yes = await ask(endSessionQuestion(name));
    if (yes) await action.run('end', () => endDesktopSession(owner, name), 'The desktop session ended.');
  };

  return (
    <section aria-labelledby="desktop-title">
      {dialog}
      <h2 id="desktop-title">Desktop</h2>
      <ErrorBox error={desktop.error} title="The desktop could not be read" />
      {desktop.loading ? (
        <Loading what="the desktop" />
      ) : d ? (
        <>
          <dl class="details">
            <dt>State</dt>
            <dd class={d.state === 'failed' ? 'problem-text' : undefined} data-desktop={d.state}>
              {desktopStateText(d)}
            </dd>
            {d.enabled ? (
              <>
                <dt>Session</dt>
                <dd>{sessionText(d.session, d.idle_timeout_secs)}</dd>
              </>
            ) : null}
          </dl>
          <div class="row-actions section-actions">
            {d.enabled ? (
              <>
                {canOpen(d, running) ? (
                  <a class="button primary" href={desktopHref(owner, name)} target="_blank" rel="noopener">
                    Open desktop
                  </a>
                ) : null}
                {d.session ? (
                  <button type="button" class="danger" disabled={busy} onClick={end}>
                    End session
                  </button>
                ) : null}
                <button type="button" disabled={busy} onClick={disable}>
                  Disable desktop
                </button>
              </>
            ) : (
              <>
                <button type="button" class="primary" disabled={busy} onClick={enable}>
                  Enable desktop
                </button>
                <span class="muted">A graphical desktop in {name}, in your browser or a VNC viewer.</span>
              </>
            )}
          </div>
          {d.enabled && !running ? <p class="muted">The desktop opens once the container runs.</p> : null}
          <ErrorBox error={action.error} />
          {action.notice ? <Notice kind="ok">{action.notice}</Notice> : null}
          {d.enabled ? (
            <>
              <p>Or from a VNC viewer on your computer, through the SSH gateway:</p>
              <CodeBlock label="SSH tunnel command" text={d.ssh_forward} />
              <p class="muted">
                then point a VNC viewer such as TigerVNC or Remmina at <code>localhost:{forwardedPort(d.ssh_forward)}</code>.
              </p>
            </>
          ) : null}
        </>
      ) : null}
    </section>
  );
}

function SnapshotSection({ container: c, changed }: { container: Container; changed: () => void }) {
  const base = `${containerPath(c)}/snapshots`;
  // Scheduled snapshots are taken without an event: looked at every minute too.
  const snapshots = usePoll(() => api<Snapshot[]>('GET', base), [base], 60000, (change) =>
    change.topic === 'snapshots' && (!change.name || (change.owner === c.owner && change.name === c.name)),
  );
  const [dialog, ask] = useConfirm();
  const [name, setName] = useState('');
  const [protect, setProtect] = useState(true);
  const {
    busy,
    error,
    notice,
    run: act,
  } = useAction(() => {
    void snapshots.reload();
    changed();
  });

  const take = (event: Event) => {
    event.preventDefault();
    const body: { name?: string; protected: boolean } = { protected: protect };
    if (name.trim()) body.name = name.trim();
    void act('take', () => api<Snapshot>('POST', base, body), 'Snapshot taken.').then(() => setName(''));
  };

  const restore = async (s: Snapshot) => {
    const yes = await ask({
      title: `Restore ${c.name} to ${s.name}?`,
      body: (
        <p>
          {c.name} is stopped, its files are put back as they were at {dateTime(s.created_at)}, and it starts again.
          Everything changed since then is lost; take a snapshot first if you may need it.
        </p>
      ),
      confirm: `Restore ${s.name}`,
      danger: true,
    });
    if (yes) await act(`restore ${s.name}`, () => api('POST', `${base}/${path(s.name)}/restore`), `Restored to ${s.name}.`);
  };

  const remove = async (s: Snapshot) => {
    const yes = await ask({
      title: `Delete snapshot ${s.name}?`,
      body: <p>The snapshot is gone for good; the container is not changed.</p>,
      confirm: `Delete ${s.name}`,
      danger: true,
    });
    if (yes) await act(`delete ${s.name}`, () => api('DELETE', `${base}/${path(s.name)}`), `Deleted ${s.name}.`);
  };

  const toggle = (s: Snapshot) =>
    act(
      `protect ${s.name}`,
      () => api('PATCH', `${base}/${path(s.name)}`, { protected: !s.protected }),
      s.protected ? `${s.name} may be pruned by the schedule now.` : `${s.name} is protected.`,
    );

  const list = snapshots.data ?? [];
  return (
    <section aria-labelledby="snapshots-title">
      {dialog}
      <h2 id="snapshots-title">Snapshots</h2>
      <form class="inline-form" onSubmit={take}>
        <TextField
          id="snapshot-name"
          label="Name (optional)"
          hint="Empty: snap-DATE-TIME."
          value={name}
          onValue={setName}
          spellcheck={false}
        />
        <label class="check">
          <input type="checkbox" checked={protect} onChange={(e) => setProtect(e.currentTarget.checked)} />
          Protected from the schedule's pruning
        </label>
        <button type="submit" class="primary" disabled={busy !== ''}>
          {busy === 'take' ? 'Taking…' : 'Take a snapshot'}
        </button>
      </form>
      <ErrorBox error={error} />
      {notice ? <Notice kind="ok">{notice}</Notice> : null}
      {busy.startsWith('restore') ? <Notice>Restoring; this takes a moment…</Notice> : null}
      <ErrorBox error={snapshots.error} title="Snapshots could not be listed" />
      {snapshots.loading ? (
        <Loading what="snapshots" />
      ) : list.length === 0 ? (
        <p class="muted">No snapshots yet.</p>
      ) : (
        <TableWrap label="Snapshots">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Taken</th>
                <th scope="col">Kind</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.map((s) => (
                <tr key={s.name}>
                  <th scope="row">{s.name}</th>
                  <td>{dateTime(s.created_at)}</td>
                  <td>
                    {s.scheduled ? 'scheduled' : 'by hand'}
                    {s.protected ? ', protected' : ''}
                  </td>
                  <td>
                    <div class="row-actions" role="group" aria-label={`Actions for snapshot ${s.name}`}>
                      <button type="button" class="small" disabled={busy !== ''} onClick={() => restore(s)} aria-label={`Restore ${s.name}`}>
                        Restore
                      </button>
                      <button type="button" class="small" disabled={busy !== ''} onClick={() => toggle(s)} aria-label={`${s.protected ? 'Unprotect' : 'Protect'} ${s.name}`}>
                        {s.protected ? 'Unprotect' : 'Protect'}
                      </button>
                      <button type="button" class="small danger" disabled={busy !== ''} onClick={() => remove(s)} aria-label={`Delete ${s.name}`}>
                        Delete
                      </button>
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
      <ScheduleSection container={c} />
    </section>
  );
}

const UNITS = [
  { value: 60, label: 'minutes' },
  { value: 3600, label: 'hours' },
  { value: 86400, label: 'days' },
];

/** `every_secs` as a number of the largest unit that divides it. */
function splitEvery(secs: number): { count: string; unit: number } {
  const unit = [...UNITS].reverse().find((u) => secs % u.value === 0)?.value ?? 60;
  return { count: String(secs / unit), unit };
}

function describeSchedule(s: SnapshotSchedule): string {
  const keeps = [
    s.keep_last ? `the newest ${s.keep_last}` : '',
    s.keep_daily ? `one a day for ${s.keep_daily} days` : '',
    s.keep_weekly ? `one a week for ${s.keep_weekly} weeks` : '',
  ].filter((k) => k !== '');
  return `A snapshot every ${span(s.every_secs)}; pruning keeps ${keeps.join(', ')} and every protected one.`;
}

/** The snapshot schedule and its retention: the scheduler takes and prunes `auto-` snapshots. */
function ScheduleSection({ container: c }: { container: Container }) {
  const base = `${containerPath(c)}/schedule`;
  // No schedule answers 404: that is "none", not an error.
  const schedule = usePoll(
    () =>
      api<SnapshotSchedule>('GET', base).catch((e: unknown) => {
        if (e instanceof ApiError && e.status === 404) return null;
        throw e;
      }),
    [base],
    60000,
    (change) => change.topic === 'snapshots' && change.owner === c.owner && change.name === c.name,
  );
  const [dialog, ask] = useConfirm();
  const [form, setForm] = useState({ count: '1', unit: 86400, last: '', daily: '7', weekly: '4' });
  const action = useAction(() => void schedule.reload());
  const busy = action.busy !== '';
  const { error, notice } = action;
  const current = schedule.data;

  // The form starts from the schedule there is.
  useEffect(() => {
    if (!current) return;
    const every = splitEvery(current.every_secs);
    setForm({
      count: every.count,
      unit: every.unit,
      last: current.keep_last ? String(current.keep_last) : '',
      daily: current.keep_daily ? String(current.keep_daily) : '',
      weekly: current.keep_weekly ? String(current.keep_weekly) : '',
    });
  }, [current]);

  const save = (event: Event) => {
    event.preventDefault();
    const body: SnapshotSchedule = { every_secs: Number(form.count) * form.unit };
    if (form.last) body.keep_last = Number(form.last);
    if (form.daily) body.keep_daily = Number(form.daily);
    if (form.weekly) body.keep_weekly = Number(form.weekly);
    void action.run('save', () => api<SnapshotSchedule>('PUT', base, body), 'Schedule saved.');
  };

  const remove = async () => {
    const yes = await ask({
      title: `Remove ${c.name}'s snapshot schedule?`,
      body: <p>No more snapshots are taken or pruned by it; the snapshots there are stay.</p>,
      confirm: 'Remove the schedule',
      danger: true,
    });
    if (yes) await action.run('remove', () => api('DELETE', base), 'Schedule removed.');
  };

  const keepField = (field: 'last' | 'daily' | 'weekly', label: string, hint: string) => (
    <Field id={`schedule-${field}`} label={label} hint={hint}>
      <input
        id={`schedule-${field}`}
        type="number"
        min={0}
        inputMode="numeric"
        aria-describedby={`schedule-${field}-hint`}
        value={form[field]}
        onInput={(e) => setForm({ ...form, [field]: e.currentTarget.value })}
      />
    </Field>
  );

  return (
    <div class="panel" role="group" aria-labelledby="schedule-title">
      {dialog}
      <h3 id="schedule-title">Schedule and retention</h3>
      <ErrorBox error={schedule.error} title="The schedule could not be read" />
      {schedule.loading ? (
        <Loading what="the schedule" />
      ) : current ? (
        <p>
          {describeSchedule(current)}
          {current.last_run_at ? ` Last taken ${ago(current.last_run_at)}.` : ' None taken yet.'}
        </p>
      ) : (
        <p class="muted">No schedule: snapshots are taken by hand only.</p>
      )}
      <form class="inline-form" onSubmit={save}>
        <Field id="schedule-every" label="Take one every">
          <input
            id="schedule-every"
            type="number"
            min={1}
            required
            inputMode="numeric"
            value={form.count}
            onInput={(e) => setForm({ ...form, count: e.currentTarget.value })}
          />
        </Field>
        <Field id="schedule-unit" label="Unit">
          <select id="schedule-unit" value={String(form.unit)} onChange={(e) => setForm({ ...form, unit: Number(e.currentTarget.value) })}>
            {UNITS.map((u) => (
              <option key={u.value} value={String(u.value)}>
                {u.label}
              </option>
            ))}
          </select>
        </Field>
        {keepField('last', 'Keep the newest', 'Empty: no count.')}
        {keepField('daily', 'Daily ones for (days)', 'Empty: none.')}
        {keepField('weekly', 'Weekly ones for (weeks)', 'Empty: none.')}
        <button type="submit" class="primary" disabled={busy}>
          {current ? 'Save the schedule' : 'Set a schedule'}
        </button>
        {current ? (
          <button type="button" class="danger" disabled={busy} onClick={remove}>
            Remove the schedule
          </button>
        ) : null}
      </form>
      <ErrorBox error={error} />
      {notice ? <Notice kind="ok">{notice}</Notice> : null}
    </div>
  );
}
