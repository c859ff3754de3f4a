import type { ServerResponse } from 'node:http';
import { InvalidInputError, type ContainerLogsHandler, type ContainerRef, type LogOptions } from './types.ts';

const TRUE = new Set(['1', 't', 'T', 'true', 'TRUE', 'True']);
const FALSE = new Set(['0', 'f', 'F', 'false', 'FALSE', 'False']);

function bool(q: URLSearchParams, name: string): boolean {
  const v = q.get(name);
  if (v === null) return false;
  if (TRUE.has(v)) return true;
  if (FALSE.has(v)) return false;
  throw new InvalidInputError(`query parameter "${name}" must be true or false, not "${v}"`);
}

function int(q: URLSearchParams, name: string, min: number): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  if (!/^-?\d+$/.test(v))
    throw new InvalidInputError(`query parameter "${name}" must be an integer, not "${v}"`);
  const n = Number(v);
  if (n < min) throw new InvalidInputError(`query parameter "${name}" must be at least ${min}, not ${n}`);
  return n;
}

/** Parses `/containerLogs` parameters the way the kubelet does; throws InvalidInputError naming the bad one. */
export function parseLogOptions(q: URLSearchParams): LogOptions {
  const opts: LogOptions = {
    follow: bool(q, 'follow'),
    previous: bool(q, 'previous'),
    timestamps: bool(q, 'timestamps'),
    stream: 'All',
  };
  // `tail` is the kubelet's older spelling of tailLines.
  opts.tailLines = int(q, 'tailLines', 0) ?? int(q, 'tail', 0);
  opts.limitBytes = int(q, 'limitBytes', 1);
  opts.sinceSeconds = int(q, 'sinceSeconds', 1);
  const sinceTime = q.get('sinceTime');
  if (sinceTime) {
    const t = new Date(sinceTime);
    if (!/^\d{4}-\d{2}-\d{2}T/.test(sinceTime) || Number.isNaN(t.getTime())) {
      throw new InvalidInputError(`query parameter "sinceTime" must be an RFC 3339 time, not "${sinceTime}"`);
    }
    opts.sinceTime = t;
  }
  if (opts.sinceSeconds !== undefined && opts.sinceTime) {
    throw new InvalidInputError('query parameters "sinceSeconds" and "sinceTime" cannot both be set');
  }
  const stream = q.get('stream');
  if (stream) {
    if (stream !== 'All' && stream !== 'Stdout' && stream !== 'Stderr') {
      throw new InvalidInputError(`query parameter "stream" must be All, Stdout or Stderr, not "${stream}"`);
    }
    if (stream !== 'All' && opts.tailLines !== undefined) {
      throw new InvalidInputError('query parameter "tailLines" cannot be combined with a single "stream"');
    }
    opts.stream = stream;
  }
  return opts;
}

/** GET /containerLogs/{namespace}/{pod}/{container}: streams the log, flushing as it goes. */
export async function serveContainerLogs(
  handler: ContainerLogsHandler,
  target: ContainerRef,
  query: URLSearchParams,
  res: ServerResponse,
): Promise<void> {
  const opts = parseLogOptions(query);
  const abort = new AbortController();
  const onClose = () => abort.abort();
  res.on('close', onClose);
  try {
    const stream = await handler.containerLogs(target, opts, abort.signal);
    res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Content-Type-Options': 'nosniff' });
    res.flushHeaders();
    let sent = 0;
    for await (const chunk of stream) {
      let buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      if (opts.limitBytes !== undefined) {
        buf = buf.subarray(0, opts.limitBytes - sent);
        sent += buf.length;
      }
      if (buf.length && !res.write(buf)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
      }
      if ((opts.limitBytes !== undefined && sent >= opts.limitBytes) || abort.signal.aborted) {
        stream.destroy();
        break;
      }
    }
    res.end();
  } finally {
    res.off('close', onClose);
  }
}
