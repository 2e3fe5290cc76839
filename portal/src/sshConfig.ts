// The OpenSSH client configuration for a user's containers, exactly as `ssp ssh-config`
// writes it (crates/ssp/src/cmd/sshconfig.rs): a `Host NAME` per container through the
// gateway (`User owner+NAME`), the gateway's key pinned under one `HostKeyAlias`, and a
// `Host NAME-sshd` jump to each container's own sshd whose key ssp pinned.

export interface GatewayAddress {
  host: string;
  port: number;
  hostKey: string;
}

export interface Entry {
  name: string;
  sshdKey?: string | undefined;
}

export const HOST_KEY_ALIAS = 'ssp-gateway';

const sshdAlias = (owner: string, name: string) => `ssp-${owner}-${name}`;

/** The known_hosts lines: the gateway's key and each pinned container sshd key. */
export function knownHostsLines(gateway: GatewayAddress, owner: string, containers: Entry[]): string {
  let text = `${HOST_KEY_ALIAS} ${gateway.hostKey}\n`;
  for (const entry of containers) {
    if (entry.sshdKey) text += `${sshdAlias(owner, entry.name)} ${entry.sshdKey}\n`;
  }
  return text;
}

export function renderSshConfig(
  gateway: GatewayAddress,
  owner: string,
  containers: Entry[],
  identity: string | null,
  knownHosts: string,
): string {
  const { host, port } = gateway;
  let text =
    `# ssp: ${owner}'s containers through the SSH gateway at ${host}:${port}\n` +
    `# Save this as ~/.ssh/ssp_config and add \`Include ssp_config\` at the top of ~/.ssh/config;\n` +
    `# save the known_hosts lines as ${knownHosts}: they pin the gateway's (and the containers' sshd) keys.\n`;
  const common = () => {
    text += `  UserKnownHostsFile ${knownHosts}\n  StrictHostKeyChecking yes\n`;
    if (identity) text += `  IdentityFile ${identity}\n  IdentitiesOnly yes\n`;
  };
  for (const entry of containers) {
    text += `\nHost ${entry.name}\n  HostName ${host}\n  Port ${port}\n  User ${owner}+${entry.name}\n  HostKeyAlias ${HOST_KEY_ALIAS}\n`;
    common();
  }
  const pinned = containers.filter((entry) => entry.sshdKey);
  if (pinned.length > 0) {
    text += `\nHost ssp-gateway-jump\n  HostName ${host}\n  Port ${port}\n  User ${owner}\n  HostKeyAlias ${HOST_KEY_ALIAS}\n`;
    common();
    for (const entry of pinned) {
      text += `\nHost ${entry.name}-sshd\n  HostName ${entry.name}\n  User ${owner}\n  ProxyJump ssp-gateway-jump\n  HostKeyAlias ${sshdAlias(owner, entry.name)}\n`;
      common();
    }
  }
  return text;
}

/** The port of a listen address (`0.0.0.0:2222`, `[::]:2222`). */
export function listenPort(listen: string): number {
  const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
  return Number.isInteger(port) && port > 0 ? port : 22;
}
