// The audit log (admin): the journal with filters (`GET /api/v1/audit` — API actions,
// sign-ins and their failures, sign-outs, invitations, the reconciler's work) and the SSH
// gateway's sessions (`GET /api/v1/gateway/sessions`). Filters apply on the button, not on
// every keystroke, so the server is asked once per search.
import { useState } from 'preact/hooks';

import { api } from '../api';
import { ErrorBox, Field, Loading, PageTitle, TableWrap } from '../components';
import { bytes, dateTime } from '../format';
import { usePoll } from '../hooks';
import type { AuditEntry, GatewaySession } from '../types';

interface Filters {
  actor: string;
  action: string;
  object: string;
}

const NO_FILTERS: Filters = { actor: '', action: '', object: '' };

/** The query string of `/audit` for `filters` (empty ones left out). */
export function auditQuery(filters: Filters, limit = 200): string {
  const query = new URLSearchParams();
  for (const key of ['actor', 'action', 'object'] as const) {
    const value = filters[key].trim();
    if (value) query.set(key, value);
  }
  query.set('limit', String(limit));
  return query.toString();
}

export function AuditPage() {
  const [draft, setDraft] = useState<Filters>(NO_FILTERS);
  const [applied, setApplied] = useState<Filters>(NO_FILTERS);
  const query = auditQuery(applied);
  // Every change is journaled; sign-ins and SSH sessions come without an event.
  const journal = usePoll(() => api<AuditEntry[]>('GET', `/audit?${query}`), [query], 30000, '*');
  const sessions = usePoll(() => api<GatewaySession[]>('GET', '/gateway/sessions?limit=100'), [], 30000);

  const field = (key: keyof Filters, label: string, hint: string) => (
    <Field id={`audit-${key}`} label={label} hint={hint}>
      <input
        id={`audit-${key}`}
        autoCapitalize="none"
        spellcheck={false}
        aria-describedby={`audit-${key}-hint`}
        value={draft[key]}
        onInput={(e) => setDraft({ ...draft, [key]: e.currentTarget.value })}
      />
    </Field>
  );

  const entries = journal.data ?? [];
  return (
    <>
      <PageTitle title="Audit log">Audit log</PageTitle>
      <form
        class="inline-form"
        aria-label="Filter the audit log"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied(draft);
        }}
      >
        {field('actor', 'Actor', 'Exact user name.')}
        {field('action', 'Action', 'Starts with, e.g. session.')}
        {field('object', 'Object', 'Exact, e.g. alice/dev.')}
        <button type="submit" class="primary">
          Apply filters
        </button>
        <button
          type="button"
          onClick={() => {
            setDraft(NO_FILTERS);
            setApplied(NO_FILTERS);
          }}
        >
          Clear
        </button>
      </form>
      <ErrorBox error={journal.error} title="The audit log could not be read" />
      {journal.loading ? (
        <Loading what="the audit log" />
      ) : entries.length === 0 ? (
        <p class="muted" role="status">
          No entries match.
        </p>
      ) : (
        <>
          <p class="muted" role="status">
            The newest {entries.length} entries{entries.length >= 200 ? ' (narrow the filters to see older ones)' : ''}.
          </p>
          <TableWrap label="Audit log">
            <table>
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Actor</th>
                  <th scope="col">Action</th>
                  <th scope="col">Object</th>
                  <th scope="col">Detail</th>
                </tr>
              </thead>
              <tbody>
                {entries.map((entry, i) => (
                  <tr key={`${entry.at}-${i}`}>
                    <td>{dateTime(entry.at)}</td>
                    <td>{entry.actor ?? <span class="muted">system</span>}</td>
                    <td>
                      <code>{entry.action}</code>
                    </td>
                    <td>{entry.object}</td>
                    <td>{entry.detail ?? ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableWrap>
        </>
      )}
      <section aria-labelledby="gateway-title">
        <h2 id="gateway-title">SSH gateway sessions</h2>
        <ErrorBox error={sessions.error} title="Gateway sessions could not be read" />
        {sessions.loading ? (
          <Loading what="gateway sessions" />
        ) : (sessions.data ?? []).length === 0 ? (
          <p class="muted">No SSH sessions yet.</p>
        ) : (
          <TableWrap label="SSH gateway sessions">
            <table>
              <thead>
                <tr>
                  <th scope="col">User</th>
                  <th scope="col">Container</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Path</th>
                  <th scope="col">Source</th>
                  <th scope="col">Started</th>
                  <th scope="col">Ended</th>
                  <th scope="col">In / out</th>
                  <th scope="col">Exit code</th>
                </tr>
              </thead>
              <tbody>
                {(sessions.data ?? []).map((s, i) => (
                  <tr key={`${s.started_at}-${s.user}-${i}`}>
                    <td>{s.user}</td>
                    <td>{s.container}</td>
                    <td>{s.kind}</td>
                    <td>{s.path ?? ''}</td>
                    <td>{s.source}</td>
                    <td>{dateTime(s.started_at)}</td>
                    <td>{s.ended_at ? dateTime(s.ended_at) : <span class="badge busy">open</span>}</td>
                    <td>
                      {bytes(s.bytes_in)} / {bytes(s.bytes_out)}
                    </td>
                    <td>{s.exit_code ?? ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableWrap>
        )}
      </section>
    </>
  );
}
