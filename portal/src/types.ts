// The API's wire shapes the portal uses, as crates/ssp-api/src/lib.rs defines them (and
// crates/ssp-server/openapi.json documents them). Times are Unix seconds unless noted.

export type Role = 'admin' | 'user';

/** `GET/POST /api/v1/session`, `POST /api/v1/invites/{token}`. */
export interface Session {
  name: string;
  role: Role;
  csrf_token: string;
  expires_at: number | string;
}

/** `GET /api/v1/invites/{token}`. */
export interface InviteInfo {
  name: string;
  expires_at: number | string;
}

/** `POST /api/v1/users/{name}/invite`. */
export interface InviteCreated {
  token: string;
  url: string;
  expires_at: number | string;
}

export interface Quota {
  max_containers: number;
  max_cpus: number;
  max_memory: string;
  max_disk: string;
  max_gpus: number;
}

export interface Usage {
  containers: number;
  cpus: number;
  memory: string;
  disk: string;
  gpus: number;
}

export interface User {
  name: string;
  role: Role;
  disabled: boolean;
  has_password: boolean;
  quota: Quota;
  usage: Usage;
  keys: number;
  created_at: number;
  /** Being removed with everything it owns (`DELETE /api/v1/users/{name}?purge=true`). */
  departing?: boolean;
  /** While departing: how many of its containers are still being deleted. */
  containers_left?: number;
  /** Which GPUs the user may be given; empty fields: any. */
  gpu_allowlist?: GpuAllowlist;
}

export interface QuotaPatch {
  max_containers?: number;
  max_cpus?: number;
  max_memory?: string;
  max_disk?: string;
  max_gpus?: number;
}

/** `PATCH /api/v1/users/{name}` (admin): absent fields keep their value. */
export interface UserUpdate {
  role?: Role;
  disabled?: boolean;
  quota?: QuotaPatch;
}

/** `PUT /api/v1/users/{name}/gpu-allowlist` (admin): absent lists mean any. */
export interface GpuAllowlist {
  indices?: number[];
  models?: string[];
}

export interface UserCreate {
  name: string;
  role?: Role;
  keys?: string[];
  quota?: QuotaPatch;
}

export interface Key {
  name: string;
  fingerprint: string;
  public_key: string;
  created_at: number;
}

export interface Token {
  name: string;
  created_at: number;
  last_used_at: number | null;
}

export interface TokenCreated {
  user: string;
  name: string;
  token: string;
}

export type DesiredState = 'running' | 'stopped';
export type Phase = 'creating' | 'ready' | 'deleting' | 'lost';

export interface Container {
  owner: string;
  name: string;
  image: string;
  cpus: number;
  memory: string;
  disk: string;
  desired_state: DesiredState;
  phase: Phase;
  status: string;
  addresses: string[];
  problem?: string;
  problem_at?: number;
  next_try_at?: number;
  waiting_for?: string;
  /** What waits for its next start (a home or share added while it ran). */
  pending?: string;
  converged: boolean;
  gpus: number[];
  gpu_health?: string;
  created_at: number;
  ssh_host_key?: string;
  /** Whether its remote desktop is enabled (`…/desktop`). */
  desktop: boolean;
}

export interface GpuAsk {
  count?: number;
  indices?: number[];
  for?: string;
}

export interface GpuGrant {
  granted: number[];
  holds: number[];
  expires_at?: number;
}

export interface ContainerCreate {
  name: string;
  image?: string;
  cpus?: number;
  memory?: string;
  disk?: string;
  gpus?: GpuAsk;
}

export interface Image {
  name: string;
  description: string;
  fingerprint: string;
  size: number;
  created_at: number;
  owner?: string;
  public: boolean;
}

export interface GatewayInfo {
  listen: string;
  host_key: string;
  host_key_fingerprint: string;
}

export interface Info {
  version: string;
  user: string;
  role: Role;
  backend: string;
  tls_fingerprint: string;
  gateway?: GatewayInfo;
}

export interface GpuHolder {
  owner: string;
  container?: string;
  granted_at: number;
  expires_at?: number;
}

export interface GpuProcess {
  pid: number;
  memory: number;
  container?: string;
}

export interface Gpu {
  index: number;
  uuid: string;
  model: string;
  memory: string;
  pci?: string;
  emulated: boolean;
  shared: boolean;
  reserved_for?: string;
  holders: GpuHolder[];
  utilization: number;
  memory_used: number;
  processes: GpuProcess[];
}

export interface GpuList {
  source: string;
  sampled_at?: number;
  gpus: Gpu[];
}

/** `GET /api/v1/gpus/history`: the last hour per GPU, in buckets (gaps left out). */
export interface GpuHistory {
  until: number;
  window_secs: number;
  bucket_secs: number;
  gpus: { index: number; buckets: GpuHistoryBucket[] }[];
}

export interface GpuHistoryBucket {
  start: number;
  utilization_avg: number;
  utilization_max: number;
  memory_used_max: number;
}

export interface ContainerGpuUsage {
  container: string;
  gpus: number[];
  memory_used: number;
  processes: GpuProcess[];
}

export interface UserGpuUsage {
  user: string;
  holding: number;
  gpu_hours: number;
  memory_used: number;
  processes: number;
}

export interface GpuUsage {
  containers: ContainerGpuUsage[];
  users: UserGpuUsage[];
}

export interface Snapshot {
  name: string;
  /** RFC 3339. */
  created_at: string;
  protected: boolean;
  scheduled: boolean;
}

/** `GET/PUT /api/v1/containers/{owner}/{name}/schedule`. */
export interface SnapshotSchedule {
  every_secs: number;
  keep_last?: number;
  keep_daily?: number;
  keep_weekly?: number;
  /** Read-only. */
  last_run_at?: number | null;
}

export interface Home {
  user: string;
  size: string;
  /** `creating`, `ready` or `deleting`. */
  phase: string;
  /** Where it is mounted in the user's containers. */
  path: string;
  /** How much of it is in use, where the storage can tell. */
  used?: string;
}

/** The group that owns a read-write share's host folder. */
export interface ShareGroup {
  name: string;
  gid: number;
  inside_gid: number;
}

/** `GET /api/v1/shares` (admin). */
export interface Share {
  name: string;
  host_path: string;
  /** Where it is mounted in containers. */
  path: string;
  read_only: boolean;
  /** Empty: everyone. */
  users: string[];
  created_at: number;
  group?: ShareGroup | null;
  /** Only in the answer to `POST /api/v1/shares`. */
  host_changes?: string[];
}

/** `POST /api/v1/shares` (admin). */
export interface ShareCreate {
  name: string;
  host_path: string;
  path?: string;
  read_only: boolean;
  users?: string[];
}

/** `POST /api/v1/containers/{owner}/{name}/terminal`. */
export interface TerminalTicket {
  ticket: string;
  session: string;
  expires_in_secs: number;
}

export type DesktopState = 'off' | 'setting-up' | 'ready' | 'failed';

/** The running desktop session of a container. */
export interface DesktopSession {
  viewers: number;
  /** Bytes, where it can be read. */
  memory: number | null;
  /** Seconds since the last viewer left; null while someone watches. */
  idle_secs: number | null;
  /** Seconds until it is ended for idleness; null while someone watches. */
  ends_in_secs: number | null;
}

/** `GET/PUT /api/v1/containers/{owner}/{name}/desktop`. */
export interface Desktop {
  enabled: boolean;
  state: DesktopState;
  problem: string | null;
  session: DesktopSession | null;
  idle_timeout_secs: number;
  /** The ssh command that forwards the desktop's VNC port to this computer. */
  ssh_forward: string;
}

/** `POST /api/v1/containers/{owner}/{name}/desktop/ticket`. */
export interface DesktopTicket {
  ticket: string;
  expires_in_secs: number;
}

/** One journal entry (`GET /api/v1/audit`). */
export interface AuditEntry {
  at: number;
  actor?: string;
  action: string;
  object: string;
  detail?: string;
}

/** One SSH gateway channel (`GET /api/v1/gateway/sessions`). */
export interface GatewaySession {
  user: string;
  container: string;
  kind: string;
  source: string;
  path?: string;
  started_at: number;
  ended_at?: number | null;
  bytes_in: number;
  bytes_out: number;
  exit_code?: number | null;
}

/** `GET /api/v1/health` (admin): each part carries `error` when it could not be read. */
export interface Health {
  lxd: { reachable: boolean; version?: string; error?: string };
  pool: { name: string; used?: number; total?: number; error?: string };
  memory: { total?: number; available?: number; error?: string };
  gpus: { source: string; count: number; unhealthy: number; sampled_at?: number; failed_probes: number };
  reconciler: { problems: number };
}
