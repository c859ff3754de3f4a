import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import type { V1Container, V1Pod, V1Volume } from '@kubernetes/client-node';
import type { VolumeFiles } from '../lib/cell-agent-api.ts';
import type { BundleMount } from './bundle.ts';
import { mountTmpfs } from './mounts.ts';
import { parseQuantity } from '../lib/quantity.ts';

export interface PreparedVolume {
  path: string;
  /** Volume kinds whose content the pod cannot change (configMap, secret, ...) mount read-only. */
  readOnly: boolean;
}

/** Volume kinds the agent can serve; the provider resolves the file-backed ones into `files`. */
export const FILE_VOLUME_KINDS = ['configMap', 'secret', 'projected', 'downwardAPI'] as const;
export const SUPPORTED_VOLUME_KINDS = ['emptyDir', 'hostPath', ...FILE_VOLUME_KINDS] as const;

/** The symlink naming the current timestamped directory of a file volume. */
const DATA_LINK = '..data';

/** A volume update the agent refuses; `field` names the volume (`volumes.<name>`). */
export class VolumeUpdateError extends Error {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
    this.name = 'VolumeUpdateError';
  }
}

/** The pod's volumes do not exist: its setup failed before making them. */
export class VolumesUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VolumesUnavailableError';
  }
}

function fileMode(v: V1Volume): number {
  return (
    v.secret?.defaultMode ??
    v.configMap?.defaultMode ??
    v.projected?.defaultMode ??
    v.downwardAPI?.defaultMode ??
    0o644
  );
}

function isFileVolume(v: V1Volume): boolean {
  return FILE_VOLUME_KINDS.some((k) => v[k] !== undefined);
}

/** `..2026_11_21_07_32_16.<random>`: the kubelet's name for a volume's timestamped directory. */
function timestampedName(): string {
  const d = new Date().toISOString();
  const stamp = `${d.slice(0, 10)}_${d.slice(11, 19)}`.replace(/[-:]/g, '_');
  return `..${stamp}.${Math.random().toString().slice(2, 12)}`;
}

/** The volume's current files (relative path -> content), read through `..data`. */
function currentFiles(path: string): Map<string, Buffer> | undefined {
  const data = join(path, DATA_LINK);
  if (!existsSync(data)) return undefined;
  const out = new Map<string, Buffer>();
  const walk = (rel: string) => {
    for (const e of readdirSync(join(data, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else out.set(r, readFileSync(join(data, r)));
    }
  };
  walk('');
  return out;
}

/**
 * Writes a file volume's content the way the kubelet's AtomicWriter does: the files go into a new
 * timestamped directory, the `..data` symlink is renamed over to point at it, each top-level name
 * is a symlink through `..data`, and the previous directory is removed. A container reading a
 * file through the mount sees either the old or the new content, never a partial write. All of it
 * is synchronous, so two writes to the same volume never interleave. Returns false when the
 * content was already there (nothing written).
 */
export function writeVolumeFiles(path: string, files: Record<string, string>, mode: number): boolean {
  const wanted = new Map(
    Object.entries(files).map(([rel, b64]) => [normalize(rel), Buffer.from(b64, 'base64')]),
  );
  const current = currentFiles(path);
  if (
    current &&
    current.size === wanted.size &&
    [...wanted].every(([rel, content]) => current.get(rel)?.equals(content))
  )
    return false;
  mkdirSync(path, { recursive: true });
  const stamp = timestampedName();
  const dir = join(path, stamp);
  mkdirSync(dir, { mode: 0o755 });
  for (const [rel, content] of wanted) {
    const target = join(dir, rel);
    mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
    writeFileSync(target, content, { mode });
    // The mode asked for, not what the agent's umask leaves of it.
    chmodSync(target, mode);
  }
  const data = join(path, DATA_LINK);
  const old = existsSync(data) ? readlinkSync(data) : undefined;
  const tmp = join(path, `${DATA_LINK}_tmp`);
  rmSync(tmp, { force: true });
  symlinkSync(stamp, tmp);
  // rename(2) replaces the old link in one step: readers resolve either the old or the new directory.
  renameSync(tmp, data);
  const top = new Set([...wanted.keys()].map((rel) => rel.split('/')[0]!));
  for (const name of top) {
    const link = join(path, name);
    if (!lstatOrUndefined(link)) symlinkSync(join(DATA_LINK, name), link);
  }
  for (const name of readdirSync(path)) {
    if (name.startsWith('..') || top.has(name)) continue;
    // A name the new content no longer has; directories made for subPath mounts stay.
    if (lstatOrUndefined(join(path, name))?.isSymbolicLink()) unlinkSync(join(path, name));
  }
  if (old && old !== stamp) rmSync(join(path, old), { recursive: true, force: true });
  return true;
}

function lstatOrUndefined(p: string) {
  try {
    return lstatSync(p);
  } catch {
    return undefined;
  }
}

/**
 * Creates each pod volume under `dir`: emptyDirs (a tmpfs for medium Memory), the provider's
 * files for configMap/secret/projected/downwardAPI volumes, hostPath as the cell's own path.
 */
export async function prepareVolumes(
  dir: string,
  pod: V1Pod,
  files: Record<string, VolumeFiles>,
): Promise<Map<string, PreparedVolume>> {
  const out = new Map<string, PreparedVolume>();
  for (const v of pod.spec?.volumes ?? []) {
    if (v.hostPath) {
      if (v.hostPath.type === 'DirectoryOrCreate') mkdirSync(v.hostPath.path, { recursive: true });
      if (v.hostPath.type === 'FileOrCreate' && !existsSync(v.hostPath.path)) {
        mkdirSync(dirname(v.hostPath.path), { recursive: true });
        writeFileSync(v.hostPath.path, '');
      }
      out.set(v.name, { path: v.hostPath.path, readOnly: false });
      continue;
    }
    const path = join(dir, v.name);
    mkdirSync(path, { recursive: true });
    if (v.emptyDir) {
      if (v.emptyDir.medium === 'Memory') {
        const limit =
          v.emptyDir.sizeLimit !== undefined ? Math.floor(parseQuantity(v.emptyDir.sizeLimit)) : undefined;
        await mountTmpfs(path, limit);
      }
      out.set(v.name, { path, readOnly: false });
      continue;
    }
    writeVolumeFiles(path, files[v.name]?.files ?? {}, fileMode(v));
    out.set(v.name, { path, readOnly: true });
  }
  return out;
}

/**
 * Checks a `PUT /v1/pod/volumes` body against the pod: every name must be one of its configMap,
 * secret, projected or downwardAPI volumes, every path relative and inside the volume, every
 * content base64. Throws VolumeUpdateError naming the first bad field.
 */
export function checkVolumeUpdate(pod: V1Pod, volumes: Record<string, VolumeFiles>): void {
  const byName = new Map((pod.spec?.volumes ?? []).map((v) => [v.name, v]));
  for (const [name, vf] of Object.entries(volumes)) {
    const field = `volumes.${name}`;
    const v = byName.get(name);
    if (!v) throw new VolumeUpdateError(`field "${field}": the pod has no volume "${name}"`, field);
    if (!isFileVolume(v)) {
      const kind = Object.keys(v).find((k) => k !== 'name') ?? 'unknown';
      throw new VolumeUpdateError(
        `field "${field}": volume "${name}" is a ${kind} volume; only ${FILE_VOLUME_KINDS.join(', ')} volumes have files to replace`,
        field,
      );
    }
    for (const [rel, b64] of Object.entries(vf.files)) {
      const f = `${field}.files.${rel}`;
      const parts = rel.split('/');
      // `..`-prefixed names are the volume's own bookkeeping (`..data`, the timestamped directories).
      if (rel === '' || rel.startsWith('/') || parts.includes('..') || parts[0]!.startsWith('..'))
        throw new VolumeUpdateError(
          `field "${f}": must be a relative path inside the volume, not starting with ".."`,
          f,
        );
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64))
        throw new VolumeUpdateError(`field "${f}": content must be base64`, f);
    }
  }
}

/** Replaces the files of the named volumes of a running pod (see writeVolumeFiles); returns the names changed. */
export function replaceVolumeFiles(dir: string, pod: V1Pod, volumes: Record<string, VolumeFiles>): string[] {
  checkVolumeUpdate(pod, volumes);
  const byName = new Map((pod.spec?.volumes ?? []).map((v) => [v.name, v]));
  const changed: string[] = [];
  for (const [name, vf] of Object.entries(volumes))
    if (writeVolumeFiles(join(dir, name), vf.files, fileMode(byName.get(name)!))) changed.push(name);
  return changed;
}

/**
 * The container's volumeMounts as bundle mounts. A subPath is resolved to the file or directory it
 * names at container start (through `..data` to the timestamped directory), so, as with the
 * kubelet, a subPath mount keeps the content it started with when the volume's files are replaced.
 */
export function containerMounts(c: V1Container, volumes: Map<string, PreparedVolume>): BundleMount[] {
  return (c.volumeMounts ?? []).map((m) => {
    const vol = volumes.get(m.name)!;
    let source = vol.path;
    if (m.subPath) {
      source = join(vol.path, normalize(m.subPath));
      if (!existsSync(source)) mkdirSync(source, { recursive: true });
      source = realpathSync(source);
    }
    return { destination: m.mountPath, source, readOnly: m.readOnly === true || vol.readOnly };
  });
}
