// A container's remote desktop: its API calls, and what the pages say about it. Pure but for
// the calls; noVNC itself is in desktopConnection.ts, loaded only by the desktop page.
//
// API (crates/ssp-server's desktop routes):
//   GET    /api/v1/containers/{owner}/{name}/desktop          → Desktop
//   PUT    /api/v1/containers/{owner}/{name}/desktop {enabled} → Desktop (the reconciler
//          applies it: state "setting-up", then "ready" or "failed" with a problem)
//   POST   /api/v1/containers/{owner}/{name}/desktop/ticket   → {ticket, expires_in_secs}: starts
//          the session first when none runs (seconds); 409 with what to do when it cannot
//   GET    /api/v1/desktop?ticket=T (websocket, same origin): raw RFB in binary frames, the
//          VNC authentication already done by ssp (security type None)
//   DELETE /api/v1/containers/{owner}/{name}/desktop/session  → 204: logs the session out
import { api, API, path } from './api';
import { bytes, plural, span } from './format';
import type { Desktop, DesktopSession, DesktopTicket } from './types';

/**
 * The desktop page's route, `#/desktop/OWNER/NAME` (as hooks' `href` writes routes): the
 * remote screen in a window of its own. Not through hooks.ts, which would take Preact into
 * the chunk this module shares with the lazily loaded desktop viewer.
 */
export function desktopHref(owner: string, name: string): string {
  return `#/${path('desktop', owner, name)}`;
}

/** The container whose desktop `route` shows, if it is the desktop page's. */
export function desktopPageOf(route: string[]): { owner: string; name: string } | null {
  const [first, owner, name, ...rest] = route;
  return first === 'desktop' && owner && name && rest.length === 0 ? { owner, name } : null;
}

export function desktopPath(owner: string, name: string): string {
  return `/containers/${path(owner, name)}/desktop`;
}

export function getDesktop(owner: string, name: string): Promise<Desktop> {
  return api<Desktop>('GET', desktopPath(owner, name));
}

export function setDesktop(owner: string, name: string, enabled: boolean): Promise<Desktop> {
  return api<Desktop>('PUT', desktopPath(owner, name), { enabled });
}

export function desktopTicket(owner: string, name: string): Promise<DesktopTicket> {
  return api<DesktopTicket>('POST', `${desktopPath(owner, name)}/ticket`, {});
}

export function endDesktopSession(owner: string, name: string): Promise<void> {
  return api<void>('DELETE', `${desktopPath(owner, name)}/session`);
}

/** The desktop websocket for `ticket`, on this page's own origin (wss: under https:). */
export function desktopSocketUrl(where: { protocol: string; host: string }, ticket: string): string {
  const scheme = where.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${where.host}${API}/desktop?ticket=${encodeURIComponent(ticket)}`;
}

/** The local port the ssh command forwards (`-L 5901:…`), for the viewer hint. */
export function forwardedPort(sshForward: string): string {
  return /-L\s*(?:[^\s:]+:)?(\d+):/.exec(sshForward)?.[1] ?? '5901';
}

/** Whether the desktop can be opened now (enabled, set up, and the container running). */
export function canOpen(desktop: Desktop, running: boolean): boolean {
  return desktop.enabled && desktop.state === 'ready' && running;
}

/** One sentence for where the desktop stands. */
export function desktopStateText(desktop: Desktop): string {
  switch (desktop.state) {
    case 'off':
      return desktop.enabled ? 'Waiting to be set up.' : 'Off.';
    case 'setting-up':
      return desktop.enabled
        ? 'Being set up: its packages are installed, which can take a few minutes.'
        : 'Being turned off.';
    case 'ready':
      return desktop.enabled ? 'Ready.' : 'Being turned off.';
    case 'failed':
      return desktop.problem ? `Failed: ${desktop.problem}` : 'Failed.';
  }
}

/** What the running session is doing, or that none runs. */
export function sessionText(session: DesktopSession | null, idleTimeoutSecs: number): string {
  if (!session) return 'No session runs; opening the desktop starts one.';
  const parts: string[] = [];
  if (session.viewers > 0) {
    parts.push(`Running, ${plural(session.viewers, 'viewer')}`);
  } else {
    parts.push(session.idle_secs !== null ? `Running, nobody watching for ${span(session.idle_secs)}` : 'Running, nobody watching');
  }
  if (session.memory !== null) parts.push(`${bytes(session.memory)} of memory`);
  let text = `${parts.join(', ')}.`;
  if (session.viewers === 0) {
    text +=
      session.ends_in_secs !== null
        ? ` It ends in ${span(session.ends_in_secs)} unless someone opens it.`
        : ` It ends after ${span(idleTimeoutSecs)} without a viewer.`;
  }
  return text;
}

/** How a desktop connection ended, as the page learned it. */
export interface Ending {
  /** The websocket's close code (1006: dropped without a close), if it was seen. */
  code?: number;
  /** The reason the server gave with its close, if any. */
  reason?: string;
  /** noVNC's verdict: false when the connection failed rather than closed. */
  clean: boolean;
  /** The reason a refused VNC security handshake gave. */
  security?: string;
  /** Whether the session is gone (asked after the close). */
  sessionGone?: boolean;
  /** Whether this page ended the session ("End session"). */
  endedHere?: boolean;
}

/** Why the desktop is not shown any more, for a person. */
export function disconnectText(ending: Ending): string {
  if (ending.endedHere) return 'You ended the desktop session. Reconnect to start a new one.';
  if (ending.security !== undefined) {
    return `The desktop refused the connection${ending.security ? `: ${ending.security}` : '.'}`;
  }
  if (ending.reason) return `The connection was closed: ${ending.reason}`;
  if (ending.sessionGone) {
    return 'The desktop session ended (logged out, or ended after being left alone). Reconnect to start a new one.';
  }
  if (!ending.clean || ending.code === 1006) {
    return 'The connection to the desktop was lost. The session keeps running: reconnect to go on.';
  }
  return 'The desktop closed the connection. Reconnect to go on.';
}
