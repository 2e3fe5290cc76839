// The one way the portal talks to ssp: `fetch` on /api/v1 with the session cookie
// (`credentials: 'same-origin'`), JSON both ways, and the session's CSRF token on every
// request that changes something. Errors become `ApiError`s that carry the API's own message
// (`{ "error": { "code", "message" } }`), so pages show what the server said.

export const API = '/api/v1';

export class ApiError extends Error {
  /** HTTP status; 0 when the daemon could not be reached at all. */
  readonly status: number;
  /** The API's stable code (`not_found`, `quota_exceeded`, …), or `network`. */
  readonly code: string;
  /** Seconds to wait before trying again, when the server said so (429). */
  readonly retryAfter: number | null;

  constructor(status: number, code: string, message: string, retryAfter: number | null = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

let csrfToken: string | null = null;
let onUnauthorized: (() => void) | null = null;

/** The signed-in session's CSRF token (null after sign-out). */
export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

/** Called when a request answers 401: the session ended (timed out, or signed out elsewhere). */
export function setUnauthorizedHandler(handler: (() => void) | null): void {
  onUnauthorized = handler;
}

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RequestOptions {
  /** Do not treat a 401 as the end of the session (sign-in, the session probe). */
  quiet401?: boolean;
}

/** `encodeURIComponent` of each part, joined with `/`: a name is always one path segment. */
export function path(...parts: (string | number)[]): string {
  return parts.map((part) => encodeURIComponent(String(part))).join('/');
}

export async function api<T>(method: Method, route: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let response: Response;
  try {
    response = await fetch(API + route, {
      method,
      headers,
      credentials: 'same-origin',
      cache: 'no-store',
      body: body === undefined ? null : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'network', `The ssp daemon could not be reached (${String(e)}). Check your connection and try again.`);
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let value: unknown = undefined;
  if (text) {
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined;
    }
  }
  if (response.ok) return value as T;
  const error = toError(response, value, text);
  if (response.status === 401 && !options.quiet401 && onUnauthorized) onUnauthorized();
  throw error;
}

function toError(response: Response, value: unknown, text: string): ApiError {
  let code = `http_${response.status}`;
  let message = '';
  let retryAfter: number | null = null;
  if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const error = record.error;
    if (typeof error === 'string') {
      message = error;
    } else if (error && typeof error === 'object') {
      const detail = error as Record<string, unknown>;
      if (typeof detail.code === 'string') code = detail.code;
      if (typeof detail.message === 'string') message = detail.message;
    }
    if (typeof record.retry_after_secs === 'number') retryAfter = record.retry_after_secs;
  }
  if (retryAfter === null) {
    const header = Number(response.headers.get('Retry-After'));
    if (Number.isFinite(header) && header > 0) retryAfter = header;
  }
  if (!message) message = text.trim().slice(0, 300) || `${response.status} ${response.statusText}`;
  return new ApiError(response.status, code, message, retryAfter);
}

/** The message to show a person for any error. */
export function messageOf(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}
