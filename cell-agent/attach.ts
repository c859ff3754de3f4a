import type { Readable, Writable } from 'node:stream';

export type OutputStream = 'stdout' | 'stderr';

/** One attached client, as the instance's streams see it. */
export interface AttachListener {
  /** Output the container wrote after the client attached. */
  output(stream: OutputStream, data: Buffer): void;
  /** The container's output ended: the instance exited. */
  ended(): void;
  /** Bytes sent to this client that it has not taken yet. */
  backlog(): number;
  /** The client held the container's output up for too long: it must detach. */
  stalled(): void;
}

/** Flow control of the container's output against its attached clients. */
export interface FlowLimits {
  /** A client this far behind pauses the reading of the container's output. */
  highWaterBytes: number;
  /** Reading resumes once every client is at most this far behind. */
  lowWaterBytes: number;
  /** Clients still behind after the output was paused this long are detached. */
  stallMs: number;
}

export const DEFAULT_FLOW_LIMITS: FlowLimits = {
  highWaterBytes: 1024 * 1024,
  lowWaterBytes: 256 * 1024,
  stallMs: 5000,
};

/** A client's hold on the instance's streams. */
export interface Attachment {
  /**
   * Writes to the container's stdin; false when the pipe is full (wait for `onDrain`). Throws
   * when the attachment does not carry stdin.
   */
  write(data: Buffer): boolean;
  onDrain(cb: () => void): void;
  /** This client's stdin ended; with `stdinOnce` the container's stdin closes. */
  endStdin(): void;
  /** Stops the client's output; ends its stdin if it has not ended yet. */
  detach(): void;
}

/** Why an attach cannot proceed; the message says what to do instead. */
export class AttachRefused extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = 'AttachRefused';
  }
}

/**
 * The live streams of one container instance: its stdout and stderr fanned out to every attached
 * client (the log file is written separately, as before), and for `stdin: true` containers the
 * stdin pipe, open for the instance's life and shared by the clients attached with stdin.
 * `stdinOnce` closes that pipe when the first client attached with stdin ends its stdin or
 * detaches, as the kubelet's runtimes do; the next instance gets a fresh pipe.
 *
 * A client that falls behind pauses the reading of `outputs` (the container's pipes), so the
 * container waits for it, as it would under containerd's attach; one that stays behind for
 * `stallMs` is detached, so a dead client never holds the container up for long. Once the
 * process has exited (`release`), output is never paused again.
 */
export class InstanceStreams {
  private readonly listeners = new Set<AttachListener>();
  private finished = false;
  private stdinClosed: boolean;
  private pausedSince?: number;
  private poll?: NodeJS.Timeout;
  private released = false;

  constructor(
    private readonly stdin: Writable | null,
    private readonly stdinOnce: boolean,
    private readonly outputs: Readable[] = [],
    private readonly limits: FlowLimits = DEFAULT_FLOW_LIMITS,
  ) {
    this.stdinClosed = stdin === null;
    // The container may exit while a client still writes: EPIPE is not the agent's problem.
    stdin?.on('error', () => undefined);
  }

  /** True while the container's output is held for a slow client. */
  get paused(): boolean {
    return this.pausedSince !== undefined;
  }

  /** True once the instance's output ended. */
  get ended(): boolean {
    return this.finished;
  }

  /** Number of clients attached now. */
  get attached(): number {
    return this.listeners.size;
  }

  publish(stream: OutputStream, data: Buffer): void {
    let behind = false;
    for (const l of this.listeners) {
      l.output(stream, data);
      if (l.backlog() > this.limits.highWaterBytes) behind = true;
    }
    if (behind && !this.released && !this.paused) this.pause();
  }

  /** The process exited: what is left in its pipes is read at once, whoever is behind. */
  release(): void {
    this.released = true;
    this.resume();
  }

  /** The instance exited and its output was read to the end: every client is told and let go. */
  end(): void {
    if (this.finished) return;
    this.finished = true;
    this.release();
    this.closeStdin();
    const ls = [...this.listeners];
    this.listeners.clear();
    for (const l of ls) l.ended();
  }

  /**
   * Why a client asking for these streams would be refused, or undefined when it may attach.
   * `container` names the container in the message.
   */
  refusal(container: string, withStdin: boolean): AttachRefused | undefined {
    if (this.finished) return new AttachRefused(400, `container "${container}" is not running`);
    if (withStdin && this.stdin === null)
      return new AttachRefused(
        400,
        `container "${container}" was not started with stdin: true, so it has no stdin to attach to; attach without stdin (no -i)`,
      );
    if (withStdin && this.stdinClosed)
      return new AttachRefused(
        400,
        `the stdin of container "${container}" was closed when the first client attached with stdin ended its input (stdinOnce: true); attach without stdin (no -i), or it opens again when the container restarts`,
      );
    return undefined;
  }

  /** Attaches a client; throws AttachRefused when `refusal` says so. */
  attach(container: string, listener: AttachListener, withStdin: boolean): Attachment {
    const refused = this.refusal(container, withStdin);
    if (refused) throw refused;
    this.listeners.add(listener);
    let stdinOpen = withStdin;
    const endStdin = () => {
      if (!stdinOpen) return;
      stdinOpen = false;
      if (this.stdinOnce) this.closeStdin();
    };
    return {
      write: (data) => {
        if (!withStdin) throw new Error('this attachment has no stdin');
        if (!stdinOpen || this.stdinClosed || data.length === 0) return true;
        return this.stdin!.write(data);
      },
      onDrain: (cb) => {
        if (this.stdinClosed) return cb();
        // The pipe may close (container exit, stdinOnce) instead of draining: either frees the writer.
        const s = this.stdin!;
        const done = () => {
          s.off('drain', done);
          s.off('close', done);
          cb();
        };
        s.once('drain', done);
        s.once('close', done);
      },
      endStdin,
      detach: () => {
        this.listeners.delete(listener);
        endStdin();
      },
    };
  }

  private pause(): void {
    this.pausedSince = Date.now();
    for (const r of this.outputs) r.pause();
    this.poll = setInterval(() => {
      const behind = [...this.listeners].filter((l) => l.backlog() > this.limits.lowWaterBytes);
      if (behind.length > 0 && Date.now() - this.pausedSince! < this.limits.stallMs) return;
      // stalled() detaches the client, which takes it out of `listeners`.
      for (const l of behind) l.stalled();
      this.resume();
    }, 10);
    this.poll.unref();
  }

  private resume(): void {
    if (!this.paused) return;
    clearInterval(this.poll);
    this.pausedSince = undefined;
    for (const r of this.outputs) r.resume();
  }

  private closeStdin(): void {
    if (this.stdinClosed) return;
    this.stdinClosed = true;
    this.stdin!.end();
  }
}
