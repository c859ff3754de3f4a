import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
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
    const mode =
      v.secret?.defaultMode ??
      v.configMap?.defaultMode ??
      v.projected?.defaultMode ??
      v.downwardAPI?.defaultMode ??
      0o644;
    for (const [rel, b64] of Object.entries(files[v.name]?.files ?? {})) {
      const target = join(path, normalize(rel));
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, Buffer.from(b64, 'base64'), { mode });
    }
    out.set(v.name, { path, readOnly: true });
  }
  return out;
}

/** The container's volumeMounts as bundle mounts (subPath resolved inside the volume). */
export function containerMounts(c: V1Container, volumes: Map<string, PreparedVolume>): BundleMount[] {
  return (c.volumeMounts ?? []).map((m) => {
    const vol = volumes.get(m.name)!;
    let source = vol.path;
    if (m.subPath) {
      source = join(vol.path, normalize(m.subPath));
      if (!existsSync(source)) mkdirSync(source, { recursive: true });
    }
    return { destination: m.mountPath, source, readOnly: m.readOnly === true || vol.readOnly };
  });
}
