import { execFile, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';

/** A runc command failed; `stderr` holds runc's own message. */
export class RuncError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'RuncError';
  }
}

export interface RuncContainerInfo {
  id: string;
  pid: number;
  status: string;
}

/**
 * Thin wrapper over the runc CLI with one state root per agent, so cells sharing a host never see
 * each other's containers.
 */
export class Runc {
  constructor(
    readonly binary: string,
    readonly root: string,
  ) {}

  private call(args: string[], timeoutMs = 30_000): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(this.binary, ['--root', this.root, ...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
        if (err) reject(new RuncError(`runc ${args[0]}: ${stderr.trim() || err.message}`, stderr));
        else resolve(stdout);
      });
    });
  }

  /**
   * Starts `runc run` in the foreground: runc stays the container's parent, so its exit code is the
   * container's (128+signal when killed) and the agent learns of the exit without polling. `--keep`
   * leaves the cgroup in place after the exit so the OOM counter can still be read.
   */
  run(
    id: string,
    bundle: string,
    opts: { pidFile: string; logFile: string; stdio: StdioOptions },
  ): ChildProcess {
    return spawn(
      this.binary,
      [
        '--root',
        this.root,
        '--log',
        opts.logFile,
        '--log-format',
        'json',
        'run',
        '--keep',
        '--bundle',
        bundle,
        '--pid-file',
        opts.pidFile,
        id,
      ],
      { stdio: opts.stdio },
    );
  }

  /** Runs a process in a running container; the process's stdio are the returned child's. */
  exec(id: string, args: string[], opts: { stdio: StdioOptions; env?: string[] }): ChildProcess {
    const envArgs = (opts.env ?? []).flatMap((e) => ['--env', e]);
    return spawn(this.binary, ['--root', this.root, 'exec', ...envArgs, id, ...args], { stdio: opts.stdio });
  }

  async kill(id: string, signal: 'TERM' | 'KILL' | string): Promise<void> {
    await this.call(['kill', id, signal]);
  }

  async delete(id: string): Promise<void> {
    await this.call(['delete', '--force', id]);
  }

  async list(): Promise<RuncContainerInfo[]> {
    const out = await this.call(['list', '--format', 'json']);
    const parsed = JSON.parse(out.trim() || 'null') as RuncContainerInfo[] | null;
    return parsed ?? [];
  }
}
