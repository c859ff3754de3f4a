import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface StartedProcess {
  proc: ChildProcess;
  /** The parsed JSON ready line the process printed on stdout. */
  ready: Record<string, unknown>;
  /** Everything the process wrote to stderr so far (its JSON logs). */
  stderr(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
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
  const proc = spawn(command, args, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 1_000_000) err = err.slice(-500_000);
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const stop = async (graceMs = 5000) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(t);
    return code;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
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
