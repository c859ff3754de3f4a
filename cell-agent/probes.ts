import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1ContainerPort, V1Probe } from '@kubernetes/client-node';

export interface ProbeTarget {
  /** Address probes connect to when the probe names no host (the pod IP). */
  podIP: string;
  ports: V1ContainerPort[];
  /** Runs a command in the container; resolves with its exit code, rejects on timeout. */
  exec(args: string[], timeoutMs: number): Promise<number>;
}

function port(p: number | string, ports: V1ContainerPort[]): number {
  if (typeof p === 'number') return p;
  if (/^\d+$/.test(p)) return Number(p);
  const named = ports.find((x) => x.name === p);
  if (!named) throw new Error(`port "${p}" is not a named port of the container`);
  return named.containerPort;
}

/** Runs one probe attempt: exec exit 0, HTTP 200-399, or a TCP connect counts as success. */
export async function probeOnce(probe: V1Probe, target: ProbeTarget): Promise<boolean> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  if (probe.exec) {
    try {
      return (await target.exec(probe.exec.command ?? [], timeoutMs)) === 0;
    } catch {
      return false;
    }
  }
  if (probe.httpGet) {
    const g = probe.httpGet;
    const mod = g.scheme === 'HTTPS' ? https : http;
    return new Promise((resolve) => {
      const headers: Record<string, string> = { 'User-Agent': 'kube-probe/1.32', Accept: '*/*' };
      for (const h of g.httpHeaders ?? []) headers[h.name] = h.value;
      const req = mod.get(
        {
          host: g.host || target.podIP,
          port: port(g.port, target.ports),
          path: g.path || '/',
          headers,
          timeout: timeoutMs,
          rejectUnauthorized: false,
        },
        (res) => {
          res.resume();
          resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => resolve(false));
    });
  }
  if (probe.tcpSocket) {
    const s = probe.tcpSocket;
    return new Promise((resolve) => {
      const sock = net.connect({
        host: s.host || target.podIP,
        port: port(s.port, target.ports),
        timeout: timeoutMs,
      });
      sock.once('connect', () => (sock.destroy(), resolve(true)));
      sock.once('timeout', () => (sock.destroy(), resolve(false)));
      sock.once('error', () => resolve(false));
    });
  }
  return false;
}

/**
 * Runs a probe on its period and reports each change of its result (after successThreshold
 * successes or failureThreshold failures in a row), until `signal` aborts.
 */
export async function runProbeLoop(
  probe: V1Probe,
  target: ProbeTarget,
  signal: AbortSignal,
  onResult: (ok: boolean) => void,
): Promise<void> {
  const period = (probe.periodSeconds ?? 10) * 1000;
  const successThreshold = probe.successThreshold ?? 1;
  const failureThreshold = probe.failureThreshold ?? 3;
  let successes = 0;
  let failures = 0;
  let last: boolean | undefined;
  try {
    await sleep((probe.initialDelaySeconds ?? 0) * 1000, undefined, { signal });
    for (;;) {
      let ok = false;
      try {
        ok = await probeOnce(probe, target);
      } catch {
        ok = false;
      }
      if (signal.aborted) return;
      successes = ok ? successes + 1 : 0;
      failures = ok ? 0 : failures + 1;
      if (ok && successes >= successThreshold && last !== true) onResult((last = true));
      if (!ok && failures >= failureThreshold && last !== false) onResult((last = false));
      await sleep(period, undefined, { signal });
    }
  } catch {
    // aborted
  }
}
