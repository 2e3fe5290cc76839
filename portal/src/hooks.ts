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

/** How often a page loads again on its own while the live stream is down. */
export const FALLBACK_POLL_MS = 30000;

/** One event of the live stream (`GET /api/v1/events`). */
export type LiveEvent =
  | { kind: 'change'; topic: string; owner?: string; name?: string }
  | { kind: 'gpus'; sampled_at: number | null; gpus: { index: number; utilization: number; memory_used: number }[] }
  | { kind: 'resync' }
  | { kind: 'up' }
  | { kind: 'down' };

type LiveListener = (event: LiveEvent) => void;

/**
 * The tab's one live stream: a server-sent-events connection that says what changed, so
 * pages load again only then (instead of every page polling). Opened by the first listener,
 * closed with the last. The browser reconnects it after a blip on its own; a stream the
 * server refused or ended (signed out, too many tabs) is tried again after
 * FALLBACK_POLL_MS, and pages poll at that pace meanwhile.
 */
class LiveStream {
  private source: EventSource | null = null;
  private listeners = new Set<LiveListener>();
  private retry: number | undefined;
  connected = false;

  listen(listener: LiveListener): () => void {
    this.listeners.add(listener);
    if (this.listeners.size === 1) this.open();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.close();
    };
  }

  private emit(event: LiveEvent) {
    for (const listener of [...this.listeners]) listener(event);
  }

  private setConnected(connected: boolean) {
    if (this.connected === connected) return;
    this.connected = connected;
    this.emit({ kind: connected ? 'up' : 'down' });
  }

  private open() {
    if (this.source || typeof EventSource === 'undefined') return;
    const source = new EventSource('/api/v1/events');
    this.source = source;
    const parse = (raw: MessageEvent): Record<string, unknown> => {
      try {
        return JSON.parse(String(raw.data)) as Record<string, unknown>;
      } catch {
        return {};
      }
    };
    source.addEventListener('ready', () => this.setConnected(true));
    source.addEventListener('change', (raw) => {
      const data = parse(raw as MessageEvent);
      if (typeof data.topic === 'string') {
        this.emit({
          kind: 'change',
          topic: data.topic,
          owner: typeof data.owner === 'string' ? data.owner : undefined,
          name: typeof data.name === 'string' ? data.name : undefined,
        });
      }
    });
    source.addEventListener('gpus', (raw) => {
      const data = parse(raw as MessageEvent);
      if (Array.isArray(data.gpus)) {
        this.emit({
          kind: 'gpus',
          sampled_at: typeof data.sampled_at === 'number' ? data.sampled_at : null,
          gpus: data.gpus as { index: number; utilization: number; memory_used: number }[],
        });
      }
    });
    source.addEventListener('resync', () => this.emit({ kind: 'resync' }));
    source.addEventListener('ended', () => this.drop());
    source.addEventListener('error', () => {
      // CONNECTING: the browser is reconnecting by itself (the events in between are
      // missed, so pages load again once it is back: `up` after `down`).
      if (source.readyState === EventSource.CLOSED) this.drop();
      else this.setConnected(false);
    });
  }

  private drop() {
    this.close();
    if (this.listeners.size > 0) {
      this.retry = window.setTimeout(() => {
        this.retry = undefined;
        if (this.listeners.size > 0) this.open();
      }, FALLBACK_POLL_MS);
    }
  }

  private close() {
    this.source?.close();
    this.source = null;
    window.clearTimeout(this.retry);
    this.retry = undefined;
    this.setConnected(false);
  }
}

export const live = new LiveStream();

/** Listens to the live stream while the component is mounted. */
export function useLiveEvents(listener: LiveListener): void {
  const ref = useRef(listener);
  ref.current = listener;
  useEffect(() => live.listen((event) => ref.current(event)), []);
}

/** Which live changes make a page's data stale: topics, or a test of each change. */
export type Topics = string[] | ((change: { topic: string; owner?: string; name?: string }) => boolean);

/**
 * Whether a change is news for container `owner/name`: its own changes (and a restore of its
 * snapshots), and the reconciler's, which name no container (they say the caller's list
 * moved).
 */
export function aboutContainer(change: { topic: string; owner?: string; name?: string }, owner: string, name: string) {
  if (change.topic !== 'containers' && change.topic !== 'snapshots') return false;
  if (!change.name) return change.topic === 'containers';
  return change.owner === owner && change.name === name;
}

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** Loads again now (after a change the page made). */
  reload: () => Promise<void>;
}

/**
 * Loads `load()` now, and again:
 * - when the live stream says one of `topics` changed (all of them when `topics` is `'*'`),
 *   or asks for a resync, or comes back after a blip;
 * - every `everyMs` (at least 5 s; 0: never) for what changes without an event (CPU and
 *   memory in use);
 * - every 30 s while the live stream is down, for pages that rely on it.
 * Only while the tab is visible: a hidden tab notes that it is stale and loads once it is
 * shown again. A change of `deps` starts over; answers to superseded loads are dropped.
 */
export function usePoll<T>(
  load: () => Promise<T>,
  deps: unknown[],
  everyMs = 0,
  topics: Topics | '*' = [],
): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const lastLoad = useRef(0);
  const inFlight = useRef(false);
  const stale = useRef(false);
  const loadRef = useRef(load);
  loadRef.current = load;
  const topicsRef = useRef(topics);
  topicsRef.current = topics;

  const run = useCallback(async () => {
    const mine = generation.current;
    inFlight.current = true;
    stale.current = false;
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
        // A change told while this load was under way may not be in its answer.
        if (stale.current && document.visibilityState === 'visible') void run();
      }
    }
  }, []);

  useEffect(() => {
    generation.current += 1;
    inFlight.current = false;
    stale.current = false;
    setData(undefined);
    setError(null);
    setLoading(true);
    void run();
    const listens = topics === '*' || typeof topics === 'function' || topics.length > 0;
    const refresh = () => {
      stale.current = true;
      if (document.visibilityState === 'visible' && !inFlight.current) void run();
    };
    const stop = listens
      ? live.listen((event) => {
          if (event.kind === 'resync' || event.kind === 'up') refresh();
          if (event.kind !== 'change') return;
          const wanted = topicsRef.current;
          const matches =
            wanted === '*' || (typeof wanted === 'function' ? wanted(event) : wanted.includes(event.topic));
          if (matches) refresh();
        })
      : undefined;
    const tick = () => {
      if (document.visibilityState !== 'visible' || inFlight.current) return;
      const age = Date.now() - lastLoad.current;
      const period = everyMs ? Math.max(MIN_POLL_MS, everyMs) : Infinity;
      const fallback = listens && !live.connected ? FALLBACK_POLL_MS : Infinity;
      if (stale.current || age >= Math.min(period, fallback) - 250) void run();
    };
    const timer = window.setInterval(tick, everyMs ? Math.max(MIN_POLL_MS, everyMs) : MIN_POLL_MS);
    document.addEventListener('visibilitychange', tick);
    return () => {
      generation.current += 1;
      stop?.();
      window.clearInterval(timer);
      document.removeEventListener('visibilitychange', tick);
    };
  }, deps);

  return { data, error, loading, reload: run };
}

/** A page's buttons: which action runs (its label; '' when none), its error, its note. */
export interface Action {
  busy: string;
  error: unknown;
  notice: string;
  /**
   * Runs `action` as `what`: clears the last error and note; on success the note is `done`;
   * on failure the error is kept for an ErrorBox; `after` (a reload) runs either way.
   */
  run: (what: string, action: () => Promise<unknown>, done: string) => Promise<void>;
}

export function useAction(after: () => void): Action {
  const [busy, setBusy] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  const afterRef = useRef(after);
  afterRef.current = after;
  const run = useCallback(async (what: string, action: () => Promise<unknown>, done: string) => {
    setBusy(what);
    setError(null);
    setNotice('');
    try {
      await action();
      setNotice(done);
    } catch (e) {
      setError(e);
    } finally {
      setBusy('');
      afterRef.current();
    }
  }, []);
  return { busy, error, notice, run };
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
