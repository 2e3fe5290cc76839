// Start, stop, restart and delete, shared by the container list and a container's page:
// every one but start asks first; a refusal shows the API's message.
import type { JSX } from 'preact';
import { useState } from 'preact/hooks';

import { api, path } from './api';
import { ErrorBox, Notice, useConfirm } from './components';
import type { Question } from './components';
import type { Container } from './types';

export function containerPath(container: { owner: string; name: string }): string {
  return `/containers/${path(container.owner, container.name)}`;
}

/** The question before ending the desktop session in container `name` (asked on its page and
 * on the desktop's own). */
export function endSessionQuestion(name: string): Question {
  return {
    title: `End the desktop session in ${name}?`,
    body: <p>The desktop logs out and its programs are closed; unsaved work in them is lost. Your files stay.</p>,
    confirm: 'End session',
    danger: true,
  };
}

export interface ContainerActions {
  /** The dialog and the last outcome, to render once on the page. */
  view: JSX.Element;
  /** The buttons for one container. */
  buttons: (container: Container, label: string) => JSX.Element;
}

export function useContainerActions(changed: () => void, gone?: () => void): ContainerActions {
  const [dialog, ask] = useConfirm();
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  const [busy, setBusy] = useState('');

  const run = async (container: Container, what: string, action: () => Promise<unknown>, after: string) => {
    const key = `${container.owner}/${container.name}`;
    setBusy(key);
    setError(null);
    setNotice('');
    try {
      await action();
      setNotice(after);
    } catch (e) {
      setError(e);
    } finally {
      setBusy('');
      if (what === 'delete' && gone) gone();
      else changed();
    }
  };

  const start = (c: Container) =>
    run(c, 'start', () => api('PUT', `${containerPath(c)}/state`, { state: 'running' }), `Starting ${c.name}.`);

  const stop = async (c: Container) => {
    const yes = await ask({
      title: `Stop ${c.name}?`,
      body: <p>Its programs end and it stays stopped until you start it. Files and GPUs stay.</p>,
      confirm: `Stop ${c.name}`,
    });
    if (yes) await run(c, 'stop', () => api('PUT', `${containerPath(c)}/state`, { state: 'stopped' }), `Stopping ${c.name}.`);
  };

  const restart = async (c: Container) => {
    const yes = await ask({
      title: `Restart ${c.name}?`,
      body: <p>Its programs end and it boots again; terminals and SSH sessions into it are closed.</p>,
      confirm: `Restart ${c.name}`,
    });
    if (yes) await run(c, 'restart', () => api('POST', `${containerPath(c)}/restart`), `Restarting ${c.name}.`);
  };

  const remove = async (c: Container) => {
    const yes = await ask({
      title: `Delete ${c.name}?`,
      body: (
        <p>
          The container <strong>{c.name}</strong>, its files and its snapshots are deleted for good, and its GPUs are
          given back. Your home volume, if you have one, stays.
        </p>
      ),
      confirm: `Delete ${c.name}`,
      danger: true,
    });
    if (yes) await run(c, 'delete', () => api('DELETE', containerPath(c)), `Deleting ${c.name}.`);
  };

  const buttons = (c: Container, label: string) => {
    const working = busy === `${c.owner}/${c.name}`;
    const deleting = c.phase === 'deleting';
    return (
      <div class="row-actions" role="group" aria-label={`Actions for ${label}`}>
        {c.desired_state === 'stopped' ? (
          <button type="button" class="small" disabled={working || deleting} aria-label={`Start ${label}`} onClick={() => start(c)}>
            Start
          </button>
        ) : (
          <button type="button" class="small" disabled={working || deleting} aria-label={`Stop ${label}`} onClick={() => stop(c)}>
            Stop
          </button>
        )}
        <button
          type="button"
          class="small"
          disabled={working || deleting || c.desired_state !== 'running'}
          aria-label={`Restart ${label}`}
          onClick={() => restart(c)}
        >
          Restart
        </button>
        <button type="button" class="small danger" disabled={working || deleting} aria-label={`Delete ${label}`} onClick={() => remove(c)}>
          Delete
        </button>
      </div>
    );
  };

  const view = (
    <>
      {dialog}
      <ErrorBox error={error} />
      {notice ? <Notice kind="ok">{notice}</Notice> : null}
    </>
  );
  return { view, buttons };
}
