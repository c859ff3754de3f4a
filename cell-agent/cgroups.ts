import { existsSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';

/** This process's cgroup v1 path per controller ("memory" -> "/process_api/abc"). */
function ownCgroups(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, controllers, path] = line.split(':');
    if (controllers === undefined || path === undefined) continue;
    // The v2 (unified) hierarchy of a hybrid host is listed as "0::<path>".
    if (controllers === '' && line.startsWith('0::')) out.set('unified', path);
    for (const c of controllers.split(',')) if (c) out.set(c, path);
  }
  return out;
}

/**
 * The directory of a cgroup v1 controller for a runc `cgroupsPath` relative to the agent's own
 * cgroup (runc nests relative paths under its caller's, and runc runs as the agent's child).
 */
export function cgroupDir(controller: string, relativePath: string): string | undefined {
  const cgroups = ownCgroups();
  const own = cgroups.get(controller) ?? cgroups.get(`name=${controller}`);
  const mount = `/sys/fs/cgroup/${controller}`;
  if (own === undefined || !existsSync(mount)) return undefined;
  return join(mount, own, relativePath);
}

/** Reads a single-number cgroup file; undefined when the cgroup or file is gone. */
export function readCgroupNumber(dir: string | undefined, file: string): number | undefined {
  if (!dir) return undefined;
  try {
    return Number(readFileSync(join(dir, file), 'utf8').trim());
  } catch {
    return undefined;
  }
}

/** Reads a `key value` cgroup file (memory.stat, memory.oom_control). */
export function readCgroupTable(dir: string | undefined, file: string): Map<string, number> {
  const out = new Map<string, number>();
  if (!dir) return out;
  try {
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
      const [k, v] = line.split(' ');
      if (k && v !== undefined) out.set(k, Number(v));
    }
  } catch {
    // cgroup already removed
  }
  return out;
}

/** Removes the agent's (now empty) parent cgroup in every v1 controller; best effort. */
export function removeCgroupTree(relativePath: string): void {
  for (const controller of ownCgroups().keys()) {
    const dir = cgroupDir(controller.replace(/^name=/, ''), relativePath);
    if (!dir || !existsSync(dir)) continue;
    try {
      for (const child of readdirSync(dir, { withFileTypes: true }))
        if (child.isDirectory()) rmdirSync(join(dir, child.name));
      rmdirSync(dir);
    } catch {
      // still in use by a container that is being torn down
    }
  }
}
