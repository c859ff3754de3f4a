import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  writeSync,
} from 'node:fs';
import type { Writable } from 'node:stream';
import type { LogOptions } from '../lib/cell-agent-api.ts';
import { formatLine, selectLines, sinceNs, timeNs } from '../lib/log-lines.ts';

// Lines longer than this are cut into partial ("P") records, as the CRI log format does.
const MAX_LINE = 16 * 1024;

/**
 * Writes one container instance's stdout/stderr to a file in the CRI log format
 * (`<RFC3339Nano> <stream> <F|P> <text>`), so timestamps and streams survive for `logs`. When the
 * file passes `maxBytes` it moves to `<path>.1` (replacing the older one), capping disk use.
 */
export class ContainerLogWriter {
  private fd: number;
  private size = 0;
  private readonly partial = { stdout: '', stderr: '' };

  constructor(
    readonly path: string,
    private readonly maxBytes: number,
  ) {
    this.fd = openSync(path, 'a');
  }

  write(stream: 'stdout' | 'stderr', chunk: Buffer | string): void {
    let text = this.partial[stream] + chunk.toString();
    let nl: number;
    while ((nl = text.indexOf('\n')) >= 0) {
      this.record(stream, 'F', text.slice(0, nl));
      text = text.slice(nl + 1);
    }
    while (text.length >= MAX_LINE) {
      this.record(stream, 'P', text.slice(0, MAX_LINE));
      text = text.slice(MAX_LINE);
    }
    this.partial[stream] = text;
  }

  /** Writes what is left of unterminated lines and closes the file. */
  close(): void {
    for (const s of ['stdout', 'stderr'] as const) if (this.partial[s]) this.record(s, 'F', this.partial[s]);
    this.partial.stdout = this.partial.stderr = '';
    try {
      closeSync(this.fd);
    } catch {
      // already closed after a failed rotation
    }
  }

  private record(stream: string, tag: 'F' | 'P', text: string): void {
    const line = `${nanoTimestamp()} ${stream} ${tag} ${text}\n`;
    try {
      if (this.size > 0 && this.size + line.length > this.maxBytes) {
        closeSync(this.fd);
        renameSync(this.path, `${this.path}.1`);
        this.fd = openSync(this.path, 'w');
        this.size = 0;
      }
      this.size += writeSync(this.fd, line);
    } catch {
      // A full or failing disk loses log lines, never the container or the agent.
    }
  }
}

let lastNs = 0n;
/** RFC 3339 with nanoseconds, strictly increasing so ordering by timestamp is stable. */
function nanoTimestamp(): string {
  let ns = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
  if (ns <= lastNs) ns = lastNs + 1n;
  lastNs = ns;
  const ms = Number(ns / 1_000_000n);
  const iso = new Date(ms).toISOString().slice(0, 19);
  return `${iso}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}Z`;
}

interface LogLine {
  time: string;
  stream: string;
  text: string;
}

/** Parses CRI log text, joining partial records into whole lines. */
function parse(text: string, carry: { pending?: LogLine }): LogLine[] {
  const out: LogLine[] = [];
  for (const raw of text.split('\n')) {
    if (!raw) continue;
    const a = raw.indexOf(' ');
    const b = raw.indexOf(' ', a + 1);
    const c = raw.indexOf(' ', b + 1);
    if (a < 0 || b < 0 || c < 0) continue;
    const line = { time: raw.slice(0, a), stream: raw.slice(a + 1, b), text: raw.slice(c + 1) };
    const tag = raw.slice(b + 1, c);
    const joined = carry.pending ? { ...carry.pending, text: carry.pending.text + line.text } : line;
    if (tag === 'P') carry.pending = joined;
    else {
      carry.pending = undefined;
      out.push(joined);
    }
  }
  return out;
}

/**
 * Writes an instance's log to `out` the way the kubelet serves `containerLogs`: sinceTime /
 * sinceSeconds, tailLines, timestamps, limitBytes, and with `follow` keeps writing new lines
 * until `finished()` says the instance exited and everything was sent, or `signal` aborts.
 */
export async function streamLog(
  path: string,
  opts: LogOptions,
  out: Writable,
  finished: () => boolean,
  signal: AbortSignal,
): Promise<void> {
  const timestamps = opts.timestamps === true;
  const since = sinceNs(opts.sinceTime ? timeNs(opts.sinceTime) : undefined, opts.sinceSeconds);
  let budget = opts.limitBytes ?? Infinity;
  const emit = (text: string): boolean => {
    if (budget <= 0) return false;
    const buf = Buffer.from(text);
    const part = buf.length > budget ? buf.subarray(0, budget) : buf;
    budget -= part.length;
    out.write(part);
    return budget > 0;
  };
  const read = (p: string) => (existsSync(p) ? readFileSync(p, 'latin1') : '');
  const carry: { pending?: LogLine } = {};
  const currentText = read(path);
  let lines = parse(Buffer.from(read(`${path}.1`) + currentText, 'latin1').toString('utf8'), carry);
  lines = selectLines(lines, { sinceNs: since, tailLines: opts.tailLines });
  for (const l of lines) if (!emit(formatLine(l, timestamps))) return;
  if (!opts.follow) return;

  let offset = Buffer.byteLength(currentText, 'latin1');
  let rest = '';
  for (;;) {
    const done = finished();
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      size = 0;
    }
    if (size < offset) offset = 0; // rotated under us
    if (size > offset) {
      const fd = openSync(path, 'r');
      const buf = Buffer.alloc(size - offset);
      const n = readSync(fd, buf, 0, buf.length, offset);
      closeSync(fd);
      offset += n;
      const text = rest + buf.subarray(0, n).toString('utf8');
      const cut = text.lastIndexOf('\n');
      rest = cut >= 0 ? text.slice(cut + 1) : text;
      for (const l of parse(cut >= 0 ? text.slice(0, cut + 1) : '', carry))
        if (!emit(formatLine(l, timestamps))) return;
      continue;
    }
    if (done || signal.aborted) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 200);
      signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
    });
  }
}
