// Sign-in with a name and password (`POST /api/v1/session`): the server sets the session
// cookie and answers with the CSRF token. Wrong credentials answer 401; too many attempts
// 429 with the seconds to wait, which the form counts down.
import { useEffect, useState } from 'preact/hooks';

import { api, ApiError } from '../api';
import { ErrorBox, Notice, PageTitle, TextField } from '../components';
import type { Session } from '../types';

export function SignInPage({ note, onSignedIn }: { note?: string | undefined; onSignedIn: (session: Session) => void }) {
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [waitUntil, setWaitUntil] = useState(0);
  const [now, setNow] = useState(Date.now());

  useEffect(() => {
    if (waitUntil <= Date.now()) return undefined;
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, [waitUntil]);

  const waitSecs = Math.max(0, Math.ceil((waitUntil - now) / 1000));

  const submit = async (event: Event) => {
    event.preventDefault();
    if (busy || waitSecs > 0) return;
    setBusy(true);
    setError(null);
    try {
      const session = await api<Session>('POST', '/session', { name: name.trim(), password }, { quiet401: true });
      setPassword('');
      onSignedIn(session);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        setError(new Error('Wrong name or password.'));
      } else if (e instanceof ApiError && e.status === 429) {
        const secs = e.retryAfter ?? 30;
        setWaitUntil(Date.now() + secs * 1000);
        setNow(Date.now());
        setError(new Error(`Too many failed sign-ins. Wait ${secs} seconds, then try again.`));
      } else {
        setError(e);
      }
      setPassword('');
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="narrow">
      <PageTitle title="Sign in">Sign in to ssp</PageTitle>
      {note ? <Notice>{note}</Notice> : null}
      <form onSubmit={submit} class="stack" aria-describedby="signin-help">
        <TextField
          id="signin-name"
          label="Name"
          value={name}
          onValue={setName}
          name="username"
          autoComplete="username"
          autoCapitalize="none"
          spellcheck={false}
          required
        />
        <TextField
          id="signin-password"
          label="Password"
          value={password}
          onValue={setPassword}
          name="password"
          type="password"
          autoComplete="current-password"
          required
        />
        <ErrorBox error={error} />
        <div class="actions">
          <button type="submit" class="primary" disabled={busy || waitSecs > 0}>
            {busy ? 'Signing in…' : waitSecs > 0 ? `Wait ${waitSecs} s` : 'Sign in'}
          </button>
        </div>
      </form>
      <p id="signin-help" class="muted">
        New here? Your admin sends you an invite link where you choose your password. Forgot it? Ask your admin for a
        new invite.
      </p>
    </section>
  );
}
