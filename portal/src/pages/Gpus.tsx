// The GPU map: every host GPU with its holders, lease ends, marks, utilization and memory
// (`GET /api/v1/gpus`), its last hour (`GET /api/v1/gpus/history`), and use per user
// (`GET /api/v1/gpus/usage`): the numbers of `ssp gpu list` and `ssp gpu usage
// [--history]`. Everyone sees who holds a GPU; container names and processes are the
// caller's own (an admin's: all), as the API decides. Utilization and memory move with
// each sample the live stream pushes; the rest loads again when a grant or a container
// changes.
import { useState } from 'preact/hooks';

import { api } from '../api';
import { ErrorBox, Loading, PageTitle, TableWrap } from '../components';
import { ago, bytes, dateTime, parseSize, timeLeft } from '../format';
import { href, useLiveEvents, useNow, usePoll } from '../hooks';
import { useSession } from '../session';
import type { Gpu, GpuHistory, GpuHistoryBucket, GpuList, GpuUsage } from '../types';

type Sample = { utilization: number; memory_used: number };

export function GpusPage() {
  const { session } = useSession();
  const gpus = usePoll(() => api<GpuList>('GET', '/gpus'), [], 0, ['gpus', 'containers']);
  const usage = usePoll(() => api<GpuUsage>('GET', '/gpus/usage'), [], 60000, ['gpus', 'containers']);
  // A bucket is a minute: loading it again more often would draw nothing new.
  const history = usePoll(() => api<GpuHistory>('GET', '/gpus/history'), [], 60000);
  const [pushed, setPushed] = useState<{ at: number | null; gpus: Map<number, Sample> } | null>(null);
  useLiveEvents((event) => {
    if (event.kind === 'gpus') {
      setPushed({ at: event.sampled_at, gpus: new Map(event.gpus.map((gpu) => [gpu.index, gpu])) });
    }
  });
  useNow(30000);
  // The last pushed sample wins over the one the list was loaded with, if it is newer.
  const newer = pushed && (pushed.at ?? 0) >= (gpus.data?.sampled_at ?? 0) ? pushed : null;
  const list = (gpus.data?.gpus ?? []).map((gpu) => {
    const sample = newer?.gpus.get(gpu.index);
    return sample ? { ...gpu, utilization: sample.utilization, memory_used: sample.memory_used } : gpu;
  });
  const sampledAt = newer?.at ?? gpus.data?.sampled_at;
  const series = new Map((history.data?.gpus ?? []).map((gpu) => [gpu.index, gpu.buckets]));
  const free = list.filter((gpu) => gpu.holders.length === 0).length;

  return (
    <>
      <PageTitle title="GPUs">GPUs</PageTitle>
      {gpus.data ? (
        <p>
          {list.length === 0
            ? 'This host has no GPUs.'
            : `${free} of ${list.length} GPUs are free.`}{' '}
          {sampledAt ? (
            <span class="muted">
              Telemetry ({gpus.data.source}) from {ago(sampledAt)}; it moves with every sample while this page is open.
            </span>
          ) : null}
        </p>
      ) : null}
      <ErrorBox error={gpus.error} title="GPUs could not be listed" />
      {gpus.loading ? (
        <Loading what="GPUs" />
      ) : (
        <ul class="gpu-grid plain">
          {list.map((gpu) => (
            <li key={gpu.index}>
              <GpuCard
                gpu={gpu}
                me={session.name}
                buckets={series.get(gpu.index) ?? []}
                bucketSecs={history.data?.bucket_secs ?? 60}
                until={history.data?.until ?? 0}
              />
            </li>
          ))}
        </ul>
      )}
      <section aria-labelledby="usage-title">
        <h2 id="usage-title">Use per user</h2>
        <ErrorBox error={usage.error} title="Use could not be loaded" />
        {usage.data ? (
          usage.data.users.length === 0 ? (
            <p class="muted">Nobody has held a GPU yet.</p>
          ) : (
            <TableWrap label="GPU use per user">
              <table>
                <thead>
                  <tr>
                    <th scope="col">User</th>
                    <th scope="col">GPUs held now</th>
                    <th scope="col">GPU-hours (all leases)</th>
                    <th scope="col">GPU memory in use</th>
                    <th scope="col">Processes</th>
                  </tr>
                </thead>
                <tbody>
                  {usage.data.users.map((user) => (
                    <tr key={user.user}>
                      <th scope="row">{user.user}</th>
                      <td>{user.holding}</td>
                      <td>{user.gpu_hours.toFixed(1)}</td>
                      <td>{bytes(user.memory_used)}</td>
                      <td>{user.processes}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableWrap>
          )
        ) : null}
      </section>
    </>
  );
}

function Meter({ label, value, text }: { label: string; value: number; text: string }) {
  const percent = Math.max(0, Math.min(100, Math.round(value)));
  return (
    <div class="meter-row">
      <span class="meter-label">{label}</span>
      <span
        class={`meter ${percent >= 90 ? 'high' : ''}`}
        role="meter"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent}
        aria-valuetext={text}
      >
        <span class="meter-fill" style={{ width: `${percent}%` }} />
      </span>
      <span class="meter-text">{text}</span>
    </div>
  );
}

/**
 * The last hour as bars, one per bucket (height: mean utilization; a darker cap marks the
 * peak), with gaps where nothing was sampled; its text says the same for screen readers.
 */
function HourChart({
  buckets,
  bucketSecs,
  until,
  memoryTotal,
}: {
  buckets: GpuHistoryBucket[];
  bucketSecs: number;
  until: number;
  memoryTotal: number;
}) {
  if (buckets.length === 0 || until === 0) {
    return <p class="muted small-text">No samples in the last hour yet.</p>;
  }
  const slots = Math.max(1, Math.round(3600 / bucketSecs));
  const first = until - slots * bucketSecs;
  const mean = Math.round(buckets.reduce((sum, b) => sum + b.utilization_avg, 0) / buckets.length);
  const peak = Math.max(...buckets.map((b) => b.utilization_max));
  const memoryPeak = Math.max(...buckets.map((b) => b.memory_used_max));
  const summary =
    `Last hour: ${mean}% mean utilization, ${peak}% peak; memory peak ${bytes(memoryPeak)}` +
    (memoryTotal > 0 ? ` of ${bytes(memoryTotal)}` : '') +
    ` (${buckets.length} of ${slots} minutes sampled)`;
  return (
    <figure class="hour-chart">
      <svg viewBox={`0 0 ${slots} 100`} preserveAspectRatio="none" role="img" aria-label={summary}>
        {buckets.map((bucket) => {
          const x = Math.floor((bucket.start - first) / bucketSecs);
          if (x < 0 || x >= slots) return null;
          return (
            <g key={bucket.start}>
              <rect class="hour-peak" x={x} width={0.8} y={100 - bucket.utilization_max} height={bucket.utilization_max} />
              <rect class="hour-mean" x={x} width={0.8} y={100 - bucket.utilization_avg} height={bucket.utilization_avg} />
            </g>
          );
        })}
      </svg>
      <figcaption class="muted small-text">{summary}</figcaption>
    </figure>
  );
}

function GpuCard({
  gpu,
  me,
  buckets,
  bucketSecs,
  until,
}: {
  gpu: Gpu;
  me: string;
  buckets: GpuHistoryBucket[];
  bucketSecs: number;
  until: number;
}) {
  const total = parseSize(gpu.memory);
  const memoryPercent = total > 0 ? (gpu.memory_used / total) * 100 : 0;
  const held = gpu.holders.length > 0;
  return (
    <article class={`gpu-card ${held ? 'held' : 'free'}`} aria-labelledby={`gpu-${gpu.index}`}>
      <h2 id={`gpu-${gpu.index}`} class="gpu-title">
        GPU {gpu.index} <span class={`badge ${held ? 'busy' : 'good'}`}>{held ? 'held' : 'free'}</span>
      </h2>
      <p class="muted small-text">
        {gpu.model}, {gpu.memory}
        {gpu.emulated ? ' (emulated)' : ''}
        {gpu.shared ? ' · shared' : ''}
        {gpu.reserved_for ? ` · reserved for ${gpu.reserved_for}` : ''}
      </p>
      <Meter label="Utilization" value={gpu.utilization} text={`${gpu.utilization}%`} />
      <Meter
        label="Memory"
        value={memoryPercent}
        text={`${bytes(gpu.memory_used)} of ${Number.isNaN(total) ? gpu.memory : bytes(total)}`}
      />
      <HourChart buckets={buckets} bucketSecs={bucketSecs} until={until} memoryTotal={Number.isNaN(total) ? 0 : total} />
      {held ? (
        <ul class="plain holders">
          {gpu.holders.map((holder) => (
            <li key={`${holder.owner}/${holder.container ?? ''}`}>
              <strong>{holder.owner === me ? `${holder.owner} (you)` : holder.owner}</strong>
              {holder.container ? (
                <>
                  {' '}
                  in <a href={href('containers', holder.owner, holder.container)}>{holder.container}</a>
                </>
              ) : null}
              <div class="muted small-text">
                since {dateTime(holder.granted_at)}
                {holder.expires_at
                  ? ` · until ${dateTime(holder.expires_at)} (${timeLeft(holder.expires_at)})`
                  : ' · no end set'}
              </div>
            </li>
          ))}
        </ul>
      ) : null}
      {gpu.processes.length > 0 ? (
        <details>
          <summary>{gpu.processes.length} processes</summary>
          <ul class="plain small-text">
            {gpu.processes.map((process) => (
              <li key={process.pid}>
                PID {process.pid}: {bytes(process.memory)}
                {process.container ? ` in ${process.container}` : ''}
              </li>
            ))}
          </ul>
        </details>
      ) : null}
    </article>
  );
}
