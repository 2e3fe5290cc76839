// A container's remote desktop (`#/desktop/OWNER/NAME`, opened in its own tab from the
// container page): the whole window is the remote screen, under a slim toolbar — the
// container, the connection's state, a clipboard panel, Reconnect, End session. Closing the
// tab leaves the session running; only "End session" ends it.
//
// For tests: the root carries `data-desktop-state` (connecting, connected, disconnected), the
// remote screen is the canvas inside `[data-desktop-screen]`, and `window.__sspDesktop.frames`
// counts the framebuffer updates drawn (see desktopConnection.ts).
import { useEffect, useRef, useState } from 'preact/hooks';

import { messageOf } from '../api';
import { endSessionQuestion } from '../containerActions';
import { ErrorBox, Field, PageTitle, useConfirm } from '../components';
import { endDesktopSession } from '../desktop';
import type { DesktopConnection, DesktopStatus } from '../desktopConnection';
import { href, useAction } from '../hooks';
import { useSession } from '../session';

export function DesktopPage({ owner, name }: { owner: string; name: string }) {
  const { session } = useSession();
  const label = owner === session.name ? name : `${owner}/${name}`;
  const [status, setStatus] = useState<DesktopStatus>({ kind: 'connecting', message: 'Loading the desktop viewer…' });
  const [clipboardOpen, setClipboardOpen] = useState(false);
  const [clipboard, setClipboard] = useState('');
  const [clipboardNote, setClipboardNote] = useState('');
  const screen = useRef<HTMLDivElement>(null);
  const toolbar = useRef<HTMLElement>(null);
  const connection = useRef<DesktopConnection | null>(null);
  const [dialog, ask] = useConfirm();
  const action = useAction(() => undefined);

  useEffect(() => {
    const target = screen.current;
    if (!target) return undefined;
    let cancelled = false;
    import('../desktopConnection')
      .then(({ DesktopConnection: Connection }) => {
        if (cancelled) return;
        connection.current = new Connection({
          owner,
          name,
          target,
          label: `Remote desktop of ${label}. F6 moves the focus to the toolbar.`,
          onStatus: setStatus,
          onClipboard: (text) => {
            setClipboard(text);
            // Onto this computer's clipboard too, where the browser allows it (a focused
            // page; Chrome asks once).
            if (navigator.clipboard && document.hasFocus()) {
              navigator.clipboard.writeText(text).then(
                () => setClipboardNote('Copied on the desktop; also on this computer’s clipboard.'),
                () => setClipboardNote('Copied on the desktop.'),
              );
            } else {
              setClipboardNote('Copied on the desktop.');
            }
          },
          leave: (direction) => {
            const buttons = toolbar.current?.querySelectorAll<HTMLElement>('button, a[href]');
            if (!buttons || buttons.length === 0) return;
            (direction > 0 ? buttons[0] : buttons[buttons.length - 1])?.focus();
          },
        });
      })
      .catch((e) => {
        if (!cancelled) setStatus({ kind: 'disconnected', message: `The desktop viewer could not be loaded: ${messageOf(e)}` });
      });
    return () => {
      cancelled = true;
      connection.current?.dispose();
      connection.current = null;
    };
  }, [owner, name]);

  const sendClipboard = (text: string) => {
    setClipboard(text);
    setClipboardNote('');
    connection.current?.paste(text);
  };

  const pasteFromComputer = async () => {
    try {
      sendClipboard(await navigator.clipboard.readText());
      setClipboardNote('Sent to the desktop’s clipboard.');
    } catch {
      setClipboardNote('The browser did not let the page read your clipboard: paste into the box instead.');
    }
  };

  const endSession = async () => {
    const yes = await ask(endSessionQuestion(label));
    if (!yes) return;
    await action.run(
      'end',
      async () => {
        await endDesktopSession(owner, name);
        connection.current?.ended();
      },
      'The session ended.',
    );
  };

  const reconnect = () => {
    connection.current?.reconnect();
    connection.current?.focus();
  };

  const state = status.kind;
  const statusText = status.kind === 'connecting' ? status.message : status.kind === 'connected' ? 'Connected' : 'Disconnected';
  return (
    <div class="desktop-page" data-desktop-state={state}>
      {dialog}
      <header class="desktop-bar" ref={toolbar}>
        <PageTitle title={`Desktop of ${label}`}>
          <a href={href('containers', owner, name)} title="The container's page">
            {label}
          </a>
        </PageTitle>
        <span class={`desktop-status ${state}`} role="status">
          {statusText}
        </span>
        <div class="desktop-tools">
          <button
            type="button"
            class="small"
            aria-expanded={clipboardOpen}
            aria-controls="desktop-clipboard"
            onClick={() => setClipboardOpen(!clipboardOpen)}
          >
            Clipboard
          </button>
          <button type="button" class="small" onClick={reconnect}>
            Reconnect
          </button>
          <button type="button" class="small danger" disabled={action.busy !== ''} onClick={endSession}>
            End session
          </button>
        </div>
      </header>
      <main class="desktop-main">
        {clipboardOpen ? (
          <div id="desktop-clipboard" class="desktop-clipboard" role="region" aria-label="Clipboard">
            <Field id="desktop-clipboard-text" label="Clipboard" hint="What you type here is on the desktop’s clipboard; what is copied there shows here.">
              <textarea
                id="desktop-clipboard-text"
                rows={5}
                aria-describedby="desktop-clipboard-text-hint"
                value={clipboard}
                onInput={(e) => sendClipboard(e.currentTarget.value)}
              />
            </Field>
            <div class="actions">
              {typeof navigator.clipboard?.readText === 'function' ? (
                <button type="button" class="small" onClick={pasteFromComputer}>
                  Paste from this computer
                </button>
              ) : null}
              <button type="button" class="small" onClick={() => setClipboardOpen(false)}>
                Close
              </button>
            </div>
            <p class="muted small-text" aria-live="polite">
              {clipboardNote}
            </p>
          </div>
        ) : null}
        <div class="desktop-screen" data-desktop-screen ref={screen} />
        {state === 'disconnected' || action.error ? (
          <div class="desktop-ended">
            <ErrorBox error={action.error} title="The session was not ended" />
            {status.kind === 'disconnected' ? <p role="alert">{status.message}</p> : null}
            <div class="actions">
              <button type="button" class="primary" onClick={reconnect}>
                Reconnect
              </button>
              <a href={href('containers', owner, name)}>Back to {label}</a>
            </div>
          </div>
        ) : null}
      </main>
    </div>
  );
}
