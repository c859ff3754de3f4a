import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

export interface StartedProcess {
  proc: ChildProcess;
  /** The parsed JSON ready line the process printed on stdout. */
  ready: Record<string, unknown>;
  /** Everything the process wrote to stderr so far (its JSON logs). */
  stderr(): string;
  /**
   * SIGTERM to the process group (and to the server's own `pid` from its ready line), then
   * SIGKILL after `graceMs`; resolves with the launcher's exit code once the server is gone.
   */
  stop(graceMs?: number): Promise<number | null>;
}

/**
 * Starts a Kip server (`npm run -s <script> -- args` or any command) and waits for its ready line.
 * Rejects with the process's stderr if it exits or stays silent for `timeoutMs`.
 */
export function startProcess(
  command: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<StartedProcess> {
  // Its own process group, so stop() reaches the server itself and not only npm or a shell,
  // which do not pass signals on.
  const proc = spawn(command, args, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 1_000_000) err = err.slice(-500_000);
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let serverPid: number | undefined;
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-proc.pid!, signal);
    } catch {
      // the group is gone already
    }
  };
  // A server whose launcher died is reparented; once it exits it stays a zombie until reaped,
  // so a zombie counts as gone.
  const alive = (pid: number | undefined) => {
    if (pid === undefined) return false;
    try {
      return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  const stop = async (graceMs = 5000) => {
    const launcherRunning = proc.exitCode === null && proc.signalCode === null;
    if (!launcherRunning && !alive(serverPid)) return proc.exitCode;
    signalGroup('SIGTERM');
    const deadline = Date.now() + graceMs;
    while ((proc.exitCode === null && proc.signalCode === null) || alive(serverPid)) {
      if (Date.now() > deadline) {
        signalGroup('SIGKILL');
        if (serverPid !== undefined && alive(serverPid)) process.kill(serverPid, 'SIGKILL');
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return launcherRunning ? await exited : proc.exitCode;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signalGroup('SIGKILL');
      reject(
        new Error(`${command} ${args.join(' ')}: no ready line within ${opts.timeoutMs ?? 20000} ms\n${err}`),
      );
    }, opts.timeoutMs ?? 20000);
    const rl = createInterface({ input: proc.stdout! });
    rl.on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if (parsed.ready === true) {
          clearTimeout(timer);
          if (typeof parsed.pid === 'number') serverPid = parsed.pid;
          resolve({ proc, ready: parsed, stderr: () => err, stop });
        }
      } catch {
        // not the ready line
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${command} ${args.join(' ')} exited with ${code} before ready\n${err}`));
    });
  });
}

/** `npm run -s <script> -- ...args` from the project root. */
export function startNpmScript(
  script: string,
  args: string[],
  opts: Parameters<typeof startProcess>[2] = {},
) {
  return startProcess('npm', ['run', '-s', script, '--', ...args], opts);
}
