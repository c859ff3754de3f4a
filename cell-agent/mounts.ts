import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, _out, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve(),
    );
  });
}

/** Mounts a writable overlay over a read-only image root filesystem. */
export function mountOverlay(lower: string, upper: string, work: string, target: string): Promise<void> {
  return run('mount', [
    '-t',
    'overlay',
    'overlay',
    '-o',
    `lowerdir=${lower},upperdir=${upper},workdir=${work}`,
    target,
  ]);
}

/** Mounts a tmpfs (emptyDir with medium Memory, the pod's /dev/shm). */
export function mountTmpfs(target: string, sizeBytes?: number): Promise<void> {
  const opts = ['nosuid', 'nodev', 'mode=1777', ...(sizeBytes ? [`size=${sizeBytes}`] : [])];
  return run('mount', ['-t', 'tmpfs', '-o', opts.join(','), 'tmpfs', target]);
}

/** Unmounts `target`, lazily so a process still holding it never blocks the pod's cleanup. */
export async function unmount(target: string): Promise<void> {
  await run('umount', ['-l', target]).catch(() => undefined);
}

/** Mount points at or below `dir`, deepest first, from this process's mount table. */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p)
    // mountinfo escapes spaces and other characters in octal.
    .map((p) => p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(prefix));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}
