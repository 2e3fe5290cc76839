// Pieces every page uses: error and notice boxes, the confirmation dialog, copy buttons,
// scrollable tables, state badges.
import type { ComponentChildren, JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

import { messageOf } from './api';

/** An error the API (or the network) answered, read out by screen readers when it appears. */
export function ErrorBox({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  return (
    <div class="box error" role="alert">
      {title ? <strong>{title}: </strong> : null}
      {messageOf(error)}
    </div>
  );
}

/** A notice (success, hints), announced politely. */
export function Notice({ children, kind = 'info' }: { children: ComponentChildren; kind?: 'info' | 'ok' | 'warn' }) {
  return (
    <div class={`box ${kind}`} role="status">
      {children}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" role="status">
      Loading {what}…
    </p>
  );
}

/** The page's heading; sets the document title. */
export function PageTitle({ children, title }: { children: ComponentChildren; title: string }) {
  useEffect(() => {
    document.title = `${title} · ssp`;
  }, [title]);
  return (
    <h1 id="page-title" tabIndex={-1}>
      {children}
    </h1>
  );
}

/** A wide table that scrolls sideways on narrow screens; focusable so keyboards can scroll it. */
export function TableWrap({ label, children }: { label: string; children: ComponentChildren }) {
  return (
    <div class="table-wrap" role="region" aria-label={label} tabIndex={0}>
      {children}
    </div>
  );
}

export interface Question {
  title: string;
  body: ComponentChildren;
  /** The confirming button's label ("Delete dev"). */
  confirm: string;
  danger?: boolean;
}

/**
 * A modal confirmation (the native `<dialog>`: focus stays inside, Escape cancels). Returns
 * the dialog to render and `ask`, which resolves true when confirmed. Cancel has the focus
 * first, so an Enter pressed by habit does not delete anything.
 */
export function useConfirm(): [JSX.Element, (question: Question) => Promise<boolean>] {
  const [question, setQuestion] = useState<Question | null>(null);
  const dialog = useRef<HTMLDialogElement>(null);
  const resolver = useRef<((yes: boolean) => void) | null>(null);
  const returnFocus = useRef<HTMLElement | null>(null);

  useEffect(() => {
    const element = dialog.current;
    if (question && element && !element.open) element.showModal();
  }, [question]);

  const finish = (yes: boolean) => {
    const resolve = resolver.current;
    resolver.current = null;
    if (dialog.current?.open) dialog.current.close();
    setQuestion(null);
    returnFocus.current?.focus();
    resolve?.(yes);
  };

  const ask = (next: Question) =>
    new Promise<boolean>((resolve) => {
      resolver.current?.(false);
      resolver.current = resolve;
      returnFocus.current = document.activeElement instanceof HTMLElement ? document.activeElement : null;
      setQuestion(next);
    });

  const element = (
    <dialog ref={dialog} class="confirm" aria-labelledby="confirm-title" onCancel={() => finish(false)}>
      {question ? (
        <div>
          <h2 id="confirm-title">{question.title}</h2>
          <div class="confirm-body">{question.body}</div>
          <div class="actions">
            <button type="button" autoFocus onClick={() => finish(false)}>
              Cancel
            </button>
            <button type="button" class={question.danger ? 'danger' : 'primary'} onClick={() => finish(true)}>
              {question.confirm}
            </button>
          </div>
        </div>
      ) : null}
    </dialog>
  );
  return [element, ask];
}

/** Copies `text` to the clipboard and says so. */
export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [done, setDone] = useState<'' | 'ok' | 'failed'>('');
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setDone('ok');
    } catch {
      setDone('failed');
    }
    window.setTimeout(() => setDone(''), 3000);
  };
  return (
    <span class="copy">
      <button type="button" class="small" onClick={copy}>
        {label}
      </button>
      <span class="muted" aria-live="polite">
        {done === 'ok' ? ' Copied.' : done === 'failed' ? ' Copying failed: select the text and copy it.' : ''}
      </span>
    </span>
  );
}

/** A block of text to copy (a command, a link, a secret). */
export function CodeBlock({ text, label }: { text: string; label: string }) {
  return (
    <div class="code-block">
      <pre aria-label={label} tabIndex={0}>
        <code>{text}</code>
      </pre>
      <CopyButton text={text} label={`Copy ${label.toLowerCase()}`} />
    </div>
  );
}

/** Where a container is: LXD's status, with what ssp still does about it. */
export function StateBadge({ status, phase, desired }: { status: string; phase: string; desired: string }) {
  let kind = 'neutral';
  let text = status;
  if (phase === 'creating') {
    kind = 'busy';
    text = 'Creating';
  } else if (phase === 'deleting') {
    kind = 'busy';
    text = 'Deleting';
  } else if (phase === 'lost') {
    kind = 'bad';
    text = 'Lost';
  } else if (status === 'Running') {
    kind = desired === 'stopped' ? 'busy' : 'good';
    text = desired === 'stopped' ? 'Stopping' : 'Running';
  } else if (status === 'Stopped') {
    kind = desired === 'running' ? 'busy' : 'neutral';
    text = desired === 'running' ? 'Starting' : 'Stopped';
  }
  return <span class={`badge ${kind}`}>{text}</span>;
}

/** A labelled form field: the label above its control, an optional hint tied to it. */
export function Field({
  id,
  label,
  hint,
  children,
}: {
  id: string;
  label: string;
  hint?: string;
  children: ComponentChildren;
}) {
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {children}
      {hint ? (
        <small id={`${id}-hint`} class="muted">
          {hint}
        </small>
      ) : null}
    </div>
  );
}

/**
 * A labelled one-line input bound to a string: the field most forms are made of. Its hint
 * (if any) is tied to it for screen readers; other input attributes pass through.
 */
export function TextField({
  id,
  label,
  hint,
  value,
  onValue,
  ...input
}: {
  id: string;
  label: string;
  hint?: string;
  value: string;
  onValue: (value: string) => void;
} & Omit<JSX.InputHTMLAttributes<HTMLInputElement>, 'id' | 'value' | 'onInput'>) {
  return (
    <Field id={id} label={label} hint={hint}>
      <input
        {...input}
        id={id}
        aria-describedby={hint ? `${id}-hint` : undefined}
        value={value}
        onInput={(e) => onValue(e.currentTarget.value)}
      />
    </Field>
  );
}

/** Offers `text` as a file download (no server round trip). */
export function DownloadButton({ text, filename, label }: { text: string; filename: string; label: string }) {
  const download = () => {
    const url = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
    const link = document.createElement('a');
    link.href = url;
    link.download = filename;
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 1000);
  };
  return (
    <button type="button" onClick={download}>
      {label}
    </button>
  );
}
