// Which shell this tab attached to in each container: its terminal session id, in
// sessionStorage (per tab, gone when the tab closes), so a reload re-attaches to the same
// shell. Kept apart from terminal.ts so pages can ask without loading xterm.js.

const storageKey = (owner: string, name: string) => `ssp.terminal.${owner}/${name}`;

/** The session id to re-attach to in `owner/name`, if any. */
export function recalled(owner: string, name: string): string | null {
  try {
    return sessionStorage.getItem(storageKey(owner, name));
  } catch {
    return null;
  }
}

/** Remembers (or, with null, forgets) the session id for `owner/name`. */
export function remember(owner: string, name: string, session: string | null): void {
  try {
    if (session) sessionStorage.setItem(storageKey(owner, name), session);
    else sessionStorage.removeItem(storageKey(owner, name));
  } catch {
    // Storage refused (private mode): the terminal works, only without re-attaching.
  }
}
