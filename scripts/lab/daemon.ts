/**
 * Background processes of the lab: started detached (their own process group, output to a log
 * file) so they outlive `make local`, recognised later by pid, and stopped by pid.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** A part of the lab that did not start: names the part and carries the tail of its log. */
export class LabStartError extends Error {
  constructor(
    readonly part: string,
    message: string,
    readonly logFile?: string,
  ) {
    super(`${part}: ${message}`);
    this.name = 'LabStartError';
  }

  /** The last lines of the part's log, for the person reading the failure. */
  logTail(lines = 20): string {
    return this.logFile ? tailFile(this.logFile, lines) : '';
  }
}

export interface DaemonSpec {
  /** The part's name, used in errors and progress. */
  part: string;
  command: string;
  args: string[];
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** stdout and stderr both go here (appended). */
  logFile: string;
  /**
   * `line`: wait for the JSON ready line on stdout (it lands in the log file); a function: poll
   * it until it resolves true.
   */
  ready: 'line' | (() => Promise<boolean>);
  timeoutMs?: number;
}

export interface Daemon {
  pid: number;
  /** The parsed ready line (empty for probe-checked parts). */
  ready: Record<string, unknown>;
}

/**
 * Pids this process started and has not stopped. `make local` leaves them running on purpose; a
 * test harness kills them should it exit in the middle of a start.
 */
export const startedPids = new Set<number>();

export function isAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but is not ours to signal.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The last `lines` lines of a file ('' when it is missing). */
export function tailFile(file: string, lines = 20): string {
  if (!existsSync(file)) return '';
  const text = readFileSync(file, 'utf8');
  return text
    .split('\n')
    .slice(-lines - 1)
    .join('\n')
    .trimEnd();
}

function readyLineIn(file: string): Record<string, unknown> | undefined {
  if (!existsSync(file)) return undefined;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.startsWith('{"ready":true')) continue;
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      // a partial line: read again on the next poll
    }
  }
  return undefined;
}

/**
 * Starts a detached process and waits until it is ready. On failure (exit, timeout) the process
 * is killed and a LabStartError naming the part is thrown.
 */
export async function startDaemon(spec: DaemonSpec): Promise<Daemon> {
  const fd = openSync(spec.logFile, 'a');
  const child = spawn(spec.command, spec.args, {
    cwd: spec.cwd,
    env: { ...process.env, ...spec.env },
    stdio: ['ignore', fd, fd],
    detached: true,
  });
  closeSync(fd);
  let exit: string | undefined;
  let spawnError: Error | undefined;
  child.once('exit', (code, signal) => (exit = signal ? `signal ${signal}` : `status ${code}`));
  child.once('error', (e) => (spawnError = e));
  child.unref();
  if (child.pid) startedPids.add(child.pid);
  const deadline = Date.now() + (spec.timeoutMs ?? 60_000);
  for (;;) {
    if (spawnError) throw new LabStartError(spec.part, `cannot run ${spec.command}: ${spawnError.message}`);
    if (exit !== undefined)
      throw new LabStartError(spec.part, `exited with ${exit} while starting`, spec.logFile);
    if (spec.ready === 'line') {
      const ready = readyLineIn(spec.logFile);
      if (ready) return { pid: child.pid!, ready };
    } else if (await spec.ready().catch(() => false)) {
      return { pid: child.pid!, ready: {} };
    }
    if (Date.now() > deadline) {
      await stopPid(child.pid, 2000);
      throw new LabStartError(spec.part, `not ready within ${spec.timeoutMs ?? 60_000} ms`, spec.logFile);
    }
    await sleep(100);
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopPid(pid: number | undefined, graceMs = 10_000): Promise<void> {
  if (pid) startedPids.delete(pid);
  if (!pid || !isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await sleep(100);
      if (isAlive(pid) && Date.now() > deadline + 5000) return;
    }
    await sleep(50);
  }
}

/** A TCP port a server answers on, checked by a plain HTTP GET. */
export async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
  await res.arrayBuffer();
  return res.ok;
}
