// Selecting log lines as the kubelet's containerLogs does, shared by the cell agent (live logs)
// and the provider (logs kept after a finished pod's VM is gone).

/** A log line: its RFC 3339 (nanosecond) timestamp and its text. */
export interface TimedLine {
  time: string;
  text: string;
}

/** Time in ns since the epoch of an RFC 3339 timestamp, at full precision; 0 when unreadable. */
export function timeNs(t: string): bigint {
  const m = /^(.*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(t);
  const ms = Date.parse(m ? `${m[1]}${m[3]}` : t);
  if (Number.isNaN(ms)) return 0n;
  return BigInt(ms) * 1_000_000n + BigInt((m?.[2] ?? '').padEnd(9, '0').slice(0, 9) || '0');
}

/** The lines at or after `sinceNs`, then the last `tailLines` of them. */
export function selectLines<T extends TimedLine>(
  lines: T[],
  opts: { sinceNs?: bigint; tailLines?: number },
): T[] {
  const since = opts.sinceNs;
  let out = since === undefined ? lines : lines.filter((l) => timeNs(l.time) >= since);
  if (opts.tailLines !== undefined) out = opts.tailLines === 0 ? [] : out.slice(-opts.tailLines);
  return out;
}

/** `sinceTime` (ns) or `sinceSeconds` before now, as a lower bound in ns; undefined for neither. */
export function sinceNs(
  sinceTimeNs: bigint | undefined,
  sinceSeconds: number | undefined,
  nowMs = Date.now(),
): bigint | undefined {
  if (sinceTimeNs !== undefined) return sinceTimeNs;
  return sinceSeconds !== undefined ? BigInt(nowMs - sinceSeconds * 1000) * 1_000_000n : undefined;
}

/** A line as served: with its timestamp or without. */
export function formatLine(l: TimedLine, timestamps: boolean): string {
  return timestamps ? `${l.time} ${l.text}\n` : `${l.text}\n`;
}
