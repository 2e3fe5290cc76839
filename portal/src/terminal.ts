// The web terminal: xterm.js in the page and a websocket to ssp, which bridges it to a shell
// in the container. This module (with xterm.js) is loaded only when a terminal opens.
//
// Protocol (crates/ssp-server's terminal API):
//   POST /api/v1/containers/{owner}/{name}/terminal {cols, rows, session?}
//        → {ticket, session, expires_in_secs}: a single-use ticket valid for seconds;
//   GET  /api/v1/terminal?ticket=…  (websocket, same origin)
//        binary frames both ways: the terminal's bytes;
//        text, page → ssp: {"type":"resize","cols":N,"rows":N};
//        text, ssp → page: {"type":"exit","code":N} when the shell ended.
// The shell outlives the websocket for a grace period: the session id is kept in
// sessionStorage per container, and sending it with the next ticket request re-attaches to
// the same shell, whose recent output ssp replays. So a reload or a network blip loses
// nothing.
import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';

import { api, API, ApiError, path } from './api';
import { recalled, remember } from './terminalStore';
import type { TerminalTicket } from './types';

export type TerminalStatus =
  | { kind: 'connecting' }
  | { kind: 'open' }
  | { kind: 'reconnecting'; inSecs: number }
  | { kind: 'exited'; code: number }
  | { kind: 'failed'; message: string };

export interface TerminalOptions {
  owner: string;
  name: string;
  element: HTMLElement;
  onStatus: (status: TerminalStatus) => void;
  /** F6 / Shift+F6 in the terminal: move the focus out of it (forward / back). */
  leave: (direction: 1 | -1) => void;
}

/** ssp keeps a detached shell this long; trying to re-attach for longer is pointless. */
const GIVE_UP_AFTER_MS = 10 * 60 * 1000;

export class TerminalSession {
  readonly term: Terminal;
  private readonly fit = new FitAddon();
  private readonly options: TerminalOptions;
  private socket: WebSocket | null = null;
  private disposed = false;
  private exited = false;
  private opened = false;
  private failures = 0;
  private firstFailureAt = 0;
  private retryTimer = 0;
  private fitTimer = 0;
  private readonly observer: ResizeObserver;
  private readonly encoder = new TextEncoder();

  constructor(options: TerminalOptions) {
    this.options = options;
    this.term = new Terminal({
      cursorBlink: true,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, monospace',
      fontSize: 14,
      scrollback: 5000,
      allowProposedApi: false,
    });
    this.term.loadAddon(this.fit);
    this.term.open(options.element);
    this.term.attachCustomKeyEventHandler((event) => {
      if (event.key === 'F6' && !event.ctrlKey && !event.altKey && !event.metaKey) {
        if (event.type === 'keydown') {
          event.preventDefault();
          options.leave(event.shiftKey ? -1 : 1);
        }
        return false;
      }
      return true;
    });
    this.term.onData((data) => this.send(this.encoder.encode(data)));
    this.term.onBinary((data) => this.send(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
    this.term.onResize(({ cols, rows }) => {
      if (this.socket?.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify({ type: 'resize', cols, rows }));
      }
    });
    this.observer = new ResizeObserver(() => {
      window.clearTimeout(this.fitTimer);
      this.fitTimer = window.setTimeout(() => this.refit(), 80);
    });
    this.observer.observe(options.element);
    this.refit();
    void this.connect();
  }

  focus(): void {
    this.term.focus();
  }

  setScreenReaderMode(on: boolean): void {
    this.term.options.screenReaderMode = on;
  }

  /** Connects again at once (after a failure, or to start a new shell after an exit). */
  reconnect(): void {
    window.clearTimeout(this.retryTimer);
    this.failures = 0;
    this.firstFailureAt = 0;
    if (this.exited) {
      this.exited = false;
      this.term.reset();
    }
    this.closeSocket();
    void this.connect();
  }

  /** Leaves the page: the shell keeps running on the server for its grace period. */
  dispose(): void {
    this.disposed = true;
    window.clearTimeout(this.retryTimer);
    window.clearTimeout(this.fitTimer);
    this.observer.disconnect();
    this.closeSocket();
    this.term.dispose();
  }

  private refit(): void {
    if (this.disposed) return;
    try {
      this.fit.fit();
    } catch {
      // Not laid out yet (hidden): the next resize fits it.
    }
  }

  private send(bytes: Uint8Array): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(bytes);
  }

  private closeSocket(): void {
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) socket.close(1000);
    }
  }

  private async ticket(): Promise<TerminalTicket> {
    const { owner, name } = this.options;
    const route = `/containers/${path(owner, name)}/terminal`;
    const size = { cols: this.term.cols, rows: this.term.rows };
    const session = recalled(owner, name);
    if (session) {
      try {
        return await api<TerminalTicket>('POST', route, { ...size, session });
      } catch (e) {
        // The shell it names may be gone (its grace period ended): ask for a new one, once.
        if (!(e instanceof ApiError) || e.status === 0 || e.status >= 500 || e.status === 401) throw e;
        remember(owner, name, null);
      }
    }
    return api<TerminalTicket>('POST', route, size);
  }

  private async connect(): Promise<void> {
    if (this.disposed) return;
    const { owner, name } = this.options;
    this.options.onStatus({ kind: 'connecting' });
    this.refit();
    let ticket: TerminalTicket;
    try {
      ticket = await this.ticket();
    } catch (e) {
      if (this.disposed) return;
      const retryable = e instanceof ApiError && (e.status === 0 || e.status >= 500 || e.code === 'busy');
      if (retryable) this.retryLater();
      else this.options.onStatus({ kind: 'failed', message: e instanceof Error ? e.message : String(e) });
      return;
    }
    if (this.disposed) return;
    remember(owner, name, ticket.session);
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${location.host}${API}/terminal?ticket=${encodeURIComponent(ticket.ticket)}`);
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    socket.onopen = () => {
      if (this.opened) {
        // Re-attached: ssp replays the recent output, which would otherwise appear twice.
        this.term.reset();
      }
      this.opened = true;
      this.failures = 0;
      this.firstFailureAt = 0;
      this.options.onStatus({ kind: 'open' });
      socket.send(JSON.stringify({ type: 'resize', cols: this.term.cols, rows: this.term.rows }));
    };
    socket.onmessage = (event: MessageEvent) => {
      if (typeof event.data === 'string') {
        this.control(event.data);
      } else {
        this.term.write(new Uint8Array(event.data as ArrayBuffer));
      }
    };
    socket.onclose = () => {
      if (this.socket !== socket || this.disposed || this.exited) return;
      this.socket = null;
      this.retryLater();
    };
  }

  private control(text: string): void {
    let message: { type?: string; code?: number };
    try {
      message = JSON.parse(text) as { type?: string; code?: number };
    } catch {
      return;
    }
    if (message.type === 'exit') {
      const code = typeof message.code === 'number' ? message.code : -1;
      this.exited = true;
      remember(this.options.owner, this.options.name, null);
      this.term.write(`\r\n\x1b[2m[the shell ended with exit code ${code}]\x1b[0m\r\n`);
      this.options.onStatus({ kind: 'exited', code });
      this.closeSocket();
    }
  }

  private retryLater(): void {
    if (this.disposed) return;
    const now = Date.now();
    if (!this.firstFailureAt) this.firstFailureAt = now;
    if (now - this.firstFailureAt > GIVE_UP_AFTER_MS) {
      this.options.onStatus({ kind: 'failed', message: 'The connection to the terminal is lost.' });
      return;
    }
    this.failures += 1;
    const secs = Math.min(15, 2 ** (this.failures - 1));
    this.options.onStatus({ kind: 'reconnecting', inSecs: secs });
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => void this.connect(), secs * 1000);
  }
}
