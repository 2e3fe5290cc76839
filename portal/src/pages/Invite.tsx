// An invite link (`#/invite/TOKEN`): the new user chooses a password and may paste an SSH
// public key; accepting signs them in. `GET /api/v1/invites/{token}` says whose invite it is
// (404 when used or expired), `POST` accepts it.
import { useState } from 'preact/hooks';

import { api, ApiError, path } from '../api';
import { ErrorBox, Loading, Notice, PageTitle, TextField } from '../components';
import { dateTime, timeLeft } from '../format';
import { navigate, usePoll } from '../hooks';
import type { InviteInfo, Session } from '../types';

export const MIN_PASSWORD = 10;

export function InvitePage({ token, onSignedIn }: { token: string; onSignedIn: (session: Session) => void }) {
  const invite = usePoll(() => api<InviteInfo>('GET', `/invites/${path(token)}`, undefined, { quiet401: true }), [token], 0);
  const [password, setPassword] = useState('');
  const [again, setAgain] = useState('');
  const [key, setKey] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [problems, setProblems] = useState<string[]>([]);

  if (invite.loading) return <Loading what="your invite" />;
  if (invite.error || !invite.data) {
    const gone = invite.error instanceof ApiError && invite.error.status === 404;
    return (
      <section class="narrow">
        <PageTitle title="Invite">This invite cannot be used</PageTitle>
        {gone ? (
          <p>The link is not valid any more: it was used already, or it expired. Ask your admin for a new one.</p>
        ) : (
          <ErrorBox error={invite.error} />
        )}
      </section>
    );
  }
  const { name, expires_at } = invite.data;

  const submit = async (event: Event) => {
    event.preventDefault();
    const found: string[] = [];
    if (password.length < MIN_PASSWORD) found.push(`The password needs at least ${MIN_PASSWORD} characters.`);
    if (password !== again) found.push('The two passwords differ.');
    setProblems(found);
    if (found.length > 0) {
      document.getElementById('invite-problems')?.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const body: { password: string; public_key?: string } = { password };
      if (key.trim()) body.public_key = key.trim();
      const session = await api<Session>('POST', `/invites/${path(token)}`, body, { quiet401: true });
      onSignedIn(session);
      navigate();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="narrow">
      <PageTitle title="Welcome">Welcome to ssp, {name}</PageTitle>
      <p>
        Choose the password you will sign in with. This link works until {dateTime(expires_at)} (
        {timeLeft(expires_at)}) and only once.
      </p>
      <form onSubmit={submit} class="stack" noValidate>
        <input type="text" name="username" autoComplete="username" value={name} hidden readOnly />
        <div class="field">
          <label for="invite-password">New password</label>
          <input
            id="invite-password"
            type="password"
            autoComplete="new-password"
            required
            minLength={MIN_PASSWORD}
            aria-describedby="invite-password-hint"
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
          <small id="invite-password-hint" class="muted">
            At least {MIN_PASSWORD} characters. A long phrase is easier to remember and harder to guess.
          </small>
        </div>
        <TextField
          id="invite-again"
          label="The same password again"
          value={again}
          onValue={setAgain}
          type="password"
          autoComplete="new-password"
          required
        />
        <div class="field">
          <label for="invite-key">SSH public key (optional)</label>
          <textarea
            id="invite-key"
            rows={3}
            spellcheck={false}
            aria-describedby="invite-key-hint"
            placeholder="ssh-ed25519 AAAA… you@laptop"
            value={key}
            onInput={(e) => setKey(e.currentTarget.value)}
          />
          <small id="invite-key-hint" class="muted">
            The contents of your <code>~/.ssh/id_ed25519.pub</code> (or another <code>.pub</code> file): it lets you
            reach your containers with <code>ssh</code>, VS Code and PyCharm. You can add keys later, too.
          </small>
        </div>
        {problems.length > 0 ? (
          <div id="invite-problems" class="box error" role="alert" tabIndex={-1}>
            <ul>
              {problems.map((problem) => (
                <li key={problem}>{problem}</li>
              ))}
            </ul>
          </div>
        ) : null}
        <ErrorBox error={error} />
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Setting up…' : 'Set password and sign in'}
          </button>
        </div>
      </form>
      <Notice>Your password is stored only as a hash; nobody, admins included, can read it.</Notice>
    </section>
  );
}
