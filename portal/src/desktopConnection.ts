// The remote desktop in the page: noVNC's RFB client over ssp's desktop websocket. This module
// (with noVNC, ~190 KB) is loaded only by the desktop page.
//
// Each connection takes a fresh single-use ticket (which also starts the session when none
// runs), then opens `wss://HOST/api/v1/desktop?ticket=T` with the `binary` subprotocol. ssp
// has done the VNC authentication already and offers security type None, so noVNC never asks
// for a password. The websocket is opened here and handed to noVNC (which accepts one instead
// of a URL) so that its close code and reason can be shown. Leaving the page only closes the
// connection: the session keeps running until it is ended or left alone too long.
import RFB from '@novnc/novnc';

import { messageOf } from './api';
import { desktopSocketUrl, desktopTicket, disconnectText, getDesktop, type Ending } from './desktop';

export type DesktopStatus =
  | { kind: 'connecting'; message: string }
  | { kind: 'connected' }
  | { kind: 'disconnected'; message: string };

export interface DesktopOptions {
  owner: string;
  name: string;
  /** Where noVNC puts its screen (the `[data-desktop-screen]` element). */
  target: HTMLElement;
  /** The accessible name of the remote screen. */
  label: string;
  onStatus: (status: DesktopStatus) => void;
  /** Text the remote desktop put on its clipboard. */
  onClipboard: (text: string) => void;
  /** F6 / Shift+F6 on the remote screen: move the focus out of it (forward / back). */
  leave: (direction: 1 | -1) => void;
}

/**
 * What a benchmark reads while the page runs: `frames` counts the RFB FramebufferUpdate
 * messages noVNC finished decoding and handed to its display (each becomes one redraw of the
 * canvas; an update that only moves the cursor shape or changes the size counts too), over
 * every connection this page made. A VNC server sends an update only when the screen changed
 * and the client asked for one, so frames per second measures what reached the page.
 */
export interface DesktopProbe {
  frames: number;
}

declare global {
  interface Window {
    __sspDesktop?: DesktopProbe;
  }
}

/** Counts the connection's finished framebuffer updates in `window.__sspDesktop.frames`. */
function countFrames(rfb: RFB): void {
  const probe = (window.__sspDesktop ??= { frames: 0 });
  // noVNC has no event per update: its own (private) handler is wrapped. The version is
  // pinned exactly; if the handler is ever renamed, frames stays 0 and nothing else breaks.
  const inner = rfb as unknown as { _framebufferUpdate?: () => boolean };
  const original = inner._framebufferUpdate;
  if (typeof original !== 'function') return;
  inner._framebufferUpdate = function (this: unknown) {
    const done = original.call(this);
    if (done) probe.frames += 1;
    return done;
  };
}

export class DesktopConnection {
  private readonly options: DesktopOptions;
  private rfb: RFB | null = null;
  /** Bumped by every connect and close: late answers for an older attempt are dropped. */
  private attempt = 0;
  private disposed = false;
  private readonly keys = (event: KeyboardEvent) => {
    // Capture phase, before noVNC's own listener on the canvas, which takes every key.
    if (event.key !== 'F6' || event.ctrlKey || event.altKey || event.metaKey) return;
    event.preventDefault();
    event.stopPropagation();
    this.options.leave(event.shiftKey ? -1 : 1);
  };

  constructor(options: DesktopOptions) {
    this.options = options;
    options.target.addEventListener('keydown', this.keys, true);
    void this.connect();
  }

  /** Connects again now, with a new ticket (starting a new session if the last one ended). */
  reconnect(): void {
    this.close();
    void this.connect();
  }

  /** Puts `text` on the remote desktop's clipboard. */
  paste(text: string): void {
    this.rfb?.clipboardPasteFrom(text);
  }

  focus(): void {
    this.rfb?.focus({ preventScroll: true });
  }

  /** The session was ended from this page: close, and say so. */
  ended(): void {
    this.close();
    this.options.onStatus({ kind: 'disconnected', message: disconnectText({ clean: true, endedHere: true }) });
  }

  /** Leaves the page: the connection closes, the session keeps running. */
  dispose(): void {
    this.disposed = true;
    this.close();
    this.options.target.removeEventListener('keydown', this.keys, true);
  }

  private close(): void {
    this.attempt += 1;
    const rfb = this.rfb;
    this.rfb = null;
    rfb?.disconnect();
  }

  private async connect(): Promise<void> {
    if (this.disposed) return;
    const mine = ++this.attempt;
    const { owner, name, onStatus } = this.options;
    onStatus({ kind: 'connecting', message: 'Starting the desktop session…' });
    let ticket: string;
    try {
      ticket = (await desktopTicket(owner, name)).ticket;
    } catch (e) {
      if (mine === this.attempt) onStatus({ kind: 'disconnected', message: messageOf(e) });
      return;
    }
    if (mine !== this.attempt) return;
    onStatus({ kind: 'connecting', message: 'Connecting…' });

    const ending: Ending = { clean: true };
    const socket = new WebSocket(desktopSocketUrl(location, ticket), ['binary']);
    socket.addEventListener('close', (event) => {
      ending.code = event.code;
      if (event.reason) ending.reason = event.reason;
    });
    const rfb = new RFB(this.options.target, socket);
    this.rfb = rfb;
    countFrames(rfb);
    // The remote desktop takes the window's size; nothing is scaled in the browser.
    rfb.scaleViewport = false;
    rfb.resizeSession = true;
    rfb.focusOnClick = true;

    const canvas = this.options.target.querySelector('canvas');
    if (canvas) {
      // A screen that takes every key: an application to assistive technology, reachable
      // with Tab (noVNC makes it focusable by script only).
      canvas.setAttribute('role', 'application');
      canvas.setAttribute('aria-label', this.options.label);
      canvas.tabIndex = 0;
    }

    rfb.addEventListener('connect', () => {
      if (this.rfb !== rfb) return;
      onStatus({ kind: 'connected' });
      rfb.focus({ preventScroll: true });
    });
    rfb.addEventListener('securityfailure', (event) => {
      ending.security = event.detail.reason ?? '';
    });
    rfb.addEventListener('clipboard', (event) => {
      if (this.rfb === rfb) this.options.onClipboard(event.detail.text);
    });
    rfb.addEventListener('disconnect', (event) => {
      if (this.rfb !== rfb) return;
      this.rfb = null;
      ending.clean = event.detail.clean;
      void this.explain(mine, ending);
    });
  }

  /** Says why the connection ended, after asking whether the session is still there. */
  private async explain(mine: number, ending: Ending): Promise<void> {
    if (!ending.reason && ending.security === undefined) {
      try {
        const desktop = await getDesktop(this.options.owner, this.options.name);
        ending.sessionGone = desktop.session === null;
      } catch {
        // Not known: the close itself is explained.
      }
    }
    if (mine === this.attempt && !this.disposed) {
      this.options.onStatus({ kind: 'disconnected', message: disconnectText(ending) });
    }
  }
}
