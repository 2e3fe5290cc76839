// Small hooks the pages share: the hash route, and data that refreshes itself.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

/** The current `#/…` route as path segments (`#/containers/alice/dev` → [containers, alice, dev]). */
export function useHashRoute(): string[] {
  const [hash, setHash] = useState(() => location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    window.addEventListener('hashchange', changed);
    return () => window.removeEventListener('hashchange', changed);
  }, []);
  return parseRoute(hash);
}

export function parseRoute(hash: string): string[] {
  const path = hash.replace(/^#\/?/, '').split('?')[0] ?? '';
  return path
    .split('/')
    .filter((part) => part !== '')
    .map((part) => {
      try {
        return decodeURIComponent(part);
      } catch {
        return part;
      }
    });
}

/** `#/a/b` for parts [a, b], each escaped into one segment. */
export function href(...parts: string[]): string {
  return `#/${parts.map((part) => encodeURIComponent(part)).join('/')}`;
}

export function navigate(...parts: string[]): void {
  location.hash = href(...parts);
}

/** Never poll faster than this: the daemon serves many people. */
export const MIN_POLL_MS = 5000;

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** Loads again now (after a change the page made). */
  reload: () => Promise<void>;
}

/**
 * Loads `load()` now and again every `everyMs` (at least 5 s) while the tab is visible; a tab
 * that becomes visible again refreshes at once if its data is older than that. `everyMs` 0
 * loads once. A change of `deps` starts over; answers to superseded loads are dropped.
 */
export function usePoll<T>(load: () => Promise<T>, deps: unknown[], everyMs = 10000): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const lastLoad = useRef(0);
  const inFlight = useRef(false);
  const loadRef = useRef(load);
  loadRef.current = load;

  const run = useCallback(async () => {
    const mine = generation.current;
    inFlight.current = true;
    lastLoad.current = Date.now();
    try {
      const value = await loadRef.current();
      if (mine !== generation.current) return;
      setData(value);
      setError(null);
    } catch (e) {
      if (mine !== generation.current) return;
      setError(e);
    } finally {
      if (mine === generation.current) {
        inFlight.current = false;
        setLoading(false);
      }
    }
  }, []);

  useEffect(() => {
    generation.current += 1;
    inFlight.current = false;
    setData(undefined);
    setError(null);
    setLoading(true);
    void run();
    if (!everyMs) return undefined;
    const period = Math.max(MIN_POLL_MS, everyMs);
    const tick = () => {
      if (document.visibilityState === 'visible' && !inFlight.current && Date.now() - lastLoad.current >= period - 250) {
        void run();
      }
    };
    const timer = window.setInterval(tick, period);
    document.addEventListener('visibilitychange', tick);
    return () => {
      generation.current += 1;
      window.clearInterval(timer);
      document.removeEventListener('visibilitychange', tick);
    };
  }, deps);

  return { data, error, loading, reload: run };
}

/** A clock that ticks every `everyMs` while visible, for "3m left" texts. */
export function useNow(everyMs = 30000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => {
      if (document.visibilityState === 'visible') setNow(Date.now());
    }, Math.max(MIN_POLL_MS, everyMs));
    return () => window.clearInterval(timer);
  }, [everyMs]);
  return now;
}
