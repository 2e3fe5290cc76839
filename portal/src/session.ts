// The signed-in session, as the pages see it.
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';

import type { Session } from './types';

export interface SessionContext {
  session: Session;
  /** Replaces the session (after signing in through an invite, say). */
  setSession: (session: Session | null) => void;
}

export const SessionCtx = createContext<SessionContext | null>(null);

/** The session; pages that use it render only when someone is signed in. */
export function useSession(): SessionContext {
  const context = useContext(SessionCtx);
  if (!context) throw new Error('useSession outside a signed-in page');
  return context;
}
