// System health (admin, `GET /api/v1/health`): LXD, the storage pool, the host's memory, its
// GPUs and the reconciler. Each part shows its own error, so the page works while LXD is down.
import { api } from '../api';
import { ErrorBox, Loading, PageTitle } from '../components';
import { ago, bytes } from '../format';
import { usePoll } from '../hooks';
import type { Health } from '../types';

function Status({ good, text }: { good: boolean; text: string }) {
  return <span class={`badge ${good ? 'good' : 'bad'}`}>{text}</span>;
}

/** "1.5GiB of 4GiB used (38%)". */
function usage(used: number, total: number): string {
  const percent = total > 0 ? Math.round((used / total) * 100) : 0;
  return `${bytes(used)} of ${bytes(total)} used (${percent}%)`;
}

export function SystemPage() {
  // Host memory and pool use move without events.
  const health = usePoll(() => api<Health>('GET', '/health'), [], 30000, ['containers', 'gpus']);
  const h = health.data;
  return (
    <>
      <PageTitle title="System">System</PageTitle>
      <p class="muted">Refreshed every 30 s while this page is open, and when a container or GPU changes.</p>
      <ErrorBox error={health.error} title="Health could not be read" />
      {health.loading || !h ? (
        health.loading ? <Loading what="system health" /> : null
      ) : (
        <dl class="details">
          <dt>LXD</dt>
          <dd>
            {h.lxd.reachable ? <Status good text="reachable" /> : <Status good={false} text="unreachable" />}{' '}
            {h.lxd.version ?? h.lxd.error ?? ''}
          </dd>
          <dt>Storage pool {h.pool.name}</dt>
          <dd>
            {h.pool.used !== undefined && h.pool.total !== undefined ? (
              usage(h.pool.used, h.pool.total)
            ) : (
              <>
                <Status good={false} text="unknown" /> {h.pool.error ?? ''}
              </>
            )}
          </dd>
          <dt>Host memory</dt>
          <dd>
            {h.memory.total !== undefined && h.memory.available !== undefined ? (
              `${usage(h.memory.total - h.memory.available, h.memory.total)}; ${bytes(h.memory.available)} available`
            ) : (
              <>
                <Status good={false} text="unknown" /> {h.memory.error ?? ''}
              </>
            )}
          </dd>
          <dt>GPUs</dt>
          <dd>
            {h.gpus.count === 0 ? (
              `none (${h.gpus.source})`
            ) : (
              <>
                <Status
                  good={h.gpus.unhealthy === 0 && h.gpus.failed_probes === 0}
                  text={h.gpus.unhealthy === 0 && h.gpus.failed_probes === 0 ? 'healthy' : 'attention'}
                />{' '}
                {h.gpus.count} ({h.gpus.source}); {h.gpus.unhealthy} missing from telemetry;{' '}
                {h.gpus.failed_probes} containers failed their GPU probe
                {h.gpus.sampled_at ? `; sampled ${ago(h.gpus.sampled_at)}` : ''}
              </>
            )}
          </dd>
          <dt>Reconciler</dt>
          <dd>
            <Status good={h.reconciler.problems === 0} text={h.reconciler.problems === 0 ? 'converging' : 'problems'} />{' '}
            {h.reconciler.problems === 0
              ? 'no container has a problem'
              : `${h.reconciler.problems} containers have a problem (see each container's page)`}
          </dd>
        </dl>
      )}
    </>
  );
}
