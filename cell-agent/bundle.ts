import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { buildEnv, expandVars } from './env.ts';
import type { PulledImage } from './image-source.ts';
import { parseQuantity } from '../lib/quantity.ts';

/** The container cannot be configured from its spec and image (the kubelet's CreateContainerConfigError). */
export class ContainerConfigError extends Error {}

// The runtime default set containerd and Docker give a container that asks for nothing.
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];
const ALL_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The capabilities this process may hand on (its bounding set); a container can get no more. */
function ownBoundingSet(): string[] {
  try {
    const hex = /CapBnd:\s*([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    if (!hex) return ALL_CAPABILITIES;
    const bits = BigInt(`0x${hex}`);
    // ALL_CAPABILITIES is in capability-number order.
    return ALL_CAPABILITIES.filter((_c, i) => (bits >> BigInt(i)) & 1n);
  } catch {
    return ALL_CAPABILITIES;
  }
}
const BOUNDING = ownBoundingSet();

/** Capabilities after securityContext add/drop ("ALL" allowed in either), or all of them when privileged. */
export function capabilitiesFor(c: V1Container): string[] {
  const sc = c.securityContext;
  if (sc?.privileged) return BOUNDING;
  const norm = (n: string) =>
    n.toUpperCase().startsWith('CAP_') ? n.toUpperCase() : `CAP_${n.toUpperCase()}`;
  const add = (sc?.capabilities?.add ?? []).map(norm);
  const drop = (sc?.capabilities?.drop ?? []).map(norm);
  let caps = add.includes('CAP_ALL') ? [...BOUNDING] : [...DEFAULT_CAPABILITIES, ...add];
  if (drop.includes('CAP_ALL')) caps = add.includes('CAP_ALL') ? caps : add;
  else caps = caps.filter((x) => !drop.includes(x));
  return [...new Set(caps.filter((x) => BOUNDING.includes(x)))];
}

/** Entrypoint/cmd as the kubelet combines them with the image config, then `$(VAR)`-expanded. */
export function processArgs(c: V1Container, image: PulledImage, vars: Map<string, string>): string[] {
  const expand = (s: string) => expandVars(s, (n) => vars.get(n));
  let args: string[];
  if (c.command && c.command.length > 0) args = [...c.command, ...(c.args ?? [])];
  else if (c.args && c.args.length > 0) args = [...(image.config.Entrypoint ?? []), ...c.args];
  else args = [...(image.config.Entrypoint ?? []), ...(image.config.Cmd ?? [])];
  if (args.length === 0)
    throw new ContainerConfigError('no command specified: neither the container nor its image sets one');
  return args.map(expand);
}

function lookupId(
  rootfs: string,
  file: 'passwd' | 'group',
  name: string,
): { id: number; gid?: number } | undefined {
  let text: string;
  try {
    text = readFileSync(join(rootfs, 'etc', file), 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f[2] !== undefined)
      return { id: Number(f[2]), gid: file === 'passwd' ? Number(f[3]) : undefined };
  }
  return undefined;
}

/** uid/gid from securityContext (container over pod), else the image's `User` ("uid[:gid]" or names). */
function resolveUser(
  pod: V1Pod,
  c: V1Container,
  image: PulledImage,
  rootfs: string,
): { uid: number; gid: number; additionalGids: number[] } {
  const psc = pod.spec?.securityContext;
  const csc = c.securityContext;
  let uid = csc?.runAsUser ?? psc?.runAsUser;
  let gid = csc?.runAsGroup ?? psc?.runAsGroup;
  if (uid === undefined && image.config.User) {
    const [u, g] = image.config.User.split(':') as [string, string | undefined];
    if (/^\d+$/.test(u)) uid = Number(u);
    else {
      const found = lookupId(rootfs, 'passwd', u);
      if (!found) throw new ContainerConfigError(`image user "${u}" is not in the image's /etc/passwd`);
      uid = found.id;
      gid ??= found.gid;
    }
    if (g !== undefined && gid === undefined) {
      if (/^\d+$/.test(g)) gid = Number(g);
      else {
        const found = lookupId(rootfs, 'group', g);
        if (!found) throw new ContainerConfigError(`image group "${g}" is not in the image's /etc/group`);
        gid = found.id;
      }
    }
  }
  const additionalGids = [
    ...(psc?.supplementalGroups ?? []),
    ...(psc?.fsGroup !== undefined ? [psc.fsGroup] : []),
  ];
  return { uid: uid ?? 0, gid: gid ?? 0, additionalGids };
}

export interface BundleMount {
  destination: string;
  source: string;
  readOnly: boolean;
  /** A tmpfs rather than a bind mount. */
  tmpfs?: boolean;
}

export interface BundleInput {
  pod: V1Pod;
  container: V1Container;
  image: PulledImage;
  /** The container's root filesystem (an overlay mount over the image). */
  rootfs: string;
  /** Spec env with every value resolved (fieldRef already substituted). */
  env: { name: string; value: string }[];
  hostname: string;
  mounts: BundleMount[];
  /** Paths of the pod's shared namespaces (the sandbox's). */
  namespaces: { ipc: string; uts: string };
  cgroupsPath: string;
}

/** The OCI runtime config (config.json) for one container. */
export function buildRuntimeSpec(input: BundleInput): Record<string, unknown> {
  const { container: c, image, pod } = input;
  const { env, specVars } = buildEnv(image.config.Env ?? [], input.env);
  if (!env.some((e) => e.startsWith('PATH='))) env.unshift(`PATH=${DEFAULT_PATH}`);
  if (!env.some((e) => e.startsWith('HOSTNAME='))) env.push(`HOSTNAME=${input.hostname}`);
  const args = processArgs(c, image, specVars);
  const user = resolveUser(pod, c, image, input.rootfs);
  const caps = capabilitiesFor(c);
  const privileged = c.securityContext?.privileged === true;
  const limits = c.resources?.limits ?? {};
  const requests = c.resources?.requests ?? {};
  const resources: Record<string, unknown> = { devices: [{ allow: privileged, access: 'rwm' }] };
  const mem = limits.memory ?? undefined;
  if (mem !== undefined) resources.memory = { limit: Math.floor(parseQuantity(mem)) };
  const cpu: Record<string, number> = {};
  if (limits.cpu !== undefined) {
    cpu.period = 100_000;
    cpu.quota = Math.max(1000, Math.round(parseQuantity(limits.cpu) * 100_000));
  }
  const cpuRequest = requests.cpu ?? limits.cpu;
  cpu.shares = cpuRequest !== undefined ? Math.max(2, Math.round(parseQuantity(cpuRequest) * 1024)) : 2;
  resources.cpu = cpu;

  const mounts: Record<string, unknown>[] = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    {
      destination: '/sys/fs/cgroup',
      type: 'cgroup',
      source: 'cgroup',
      options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'],
    },
    ...input.mounts.map((m) =>
      m.tmpfs
        ? {
            destination: m.destination,
            type: 'tmpfs',
            source: 'tmpfs',
            options: ['nosuid', 'nodev', 'mode=1777'],
          }
        : {
            destination: m.destination,
            type: 'bind',
            source: m.source,
            options: ['rbind', m.readOnly ? 'ro' : 'rw', 'rprivate'],
          },
    ),
  ];
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user,
      args,
      env,
      cwd: c.workingDir || image.config.WorkingDir || '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [] },
      noNewPrivileges: c.securityContext?.allowPrivilegeEscalation === false,
    },
    root: { path: input.rootfs, readonly: c.securityContext?.readOnlyRootFilesystem === true },
    mounts,
    linux: {
      // No network entry: runc runs in the agent's (the cell's) network namespace and the container inherits it.
      namespaces: [
        { type: 'pid' },
        { type: 'mount' },
        { type: 'ipc', path: input.namespaces.ipc },
        { type: 'uts', path: input.namespaces.uts },
      ],
      cgroupsPath: input.cgroupsPath,
      resources,
      ...(privileged
        ? {}
        : {
            maskedPaths: [
              '/proc/acpi',
              '/proc/asound',
              '/proc/kcore',
              '/proc/keys',
              '/proc/latency_stats',
              '/proc/timer_list',
              '/proc/timer_stats',
              '/proc/sched_debug',
              '/sys/firmware',
              '/proc/scsi',
            ],
            readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
          }),
    },
  };
}
