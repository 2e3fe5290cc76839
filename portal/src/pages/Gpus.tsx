// The GPU map: every host GPU with its holders, lease ends, marks, utilization and memory
// (`GET /api/v1/gpus`), and use per user (`GET /api/v1/gpus/usage`): the numbers of
// `ssp gpu list` and `ssp gpu usage`. Everyone sees who holds a GPU; container names and
// processes are the caller's own (an admin's: all), as the API decides.
import { api } from '../api';
import { ErrorBox, Loading, PageTitle, TableWrap } from '../components';
import { ago, bytes, dateTime, parseSize, timeLeft } from '../format';
import { href, useNow, usePoll } from '../hooks';
import { useSession } from '../session';
import type { Gpu, GpuList, GpuUsage } from '../types';

export function GpusPage() {
  const { session } = useSession();
  const gpus = usePoll(() => api<GpuList>('GET', '/gpus'), [], 5000);
  const usage = usePoll(() => api<GpuUsage>('GET', '/gpus/usage'), [], 15000);
  useNow(30000);
  const list = gpus.data?.gpus ?? [];
  const free = list.filter((gpu) => gpu.holders.length === 0).length;

  return (
    <>
      <PageTitle title="GPUs">GPUs</PageTitle>
      {gpus.data ? (
        <p>
          {list.length === 0
            ? 'This host has no GPUs.'
            : `${free} of ${list.length} GPUs are free.`}{' '}
          {gpus.data.sampled_at ? (
            <span class="muted">
              Telemetry ({gpus.data.source}) from {ago(gpus.data.sampled_at)}; refreshed every 5 s while this page is open.
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
              <GpuCard gpu={gpu} me={session.name} />
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

function GpuCard({ gpu, me }: { gpu: Gpu; me: string }) {
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
