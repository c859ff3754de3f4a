/**
 * `npx tsx emulators/cell-sim/main.ts --compute-admin <url> [--listen 0.0.0.0:6421]`: the cell
 * simulator (docs/lab.md), serving the cell agent API over mutual TLS for every cell of a
 * Compute Engine emulator running the `none` hypervisor.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Command, InvalidArgumentError } from 'commander';
import { createLogger } from '../../lib/log.ts';
import { splitHostPort } from '../../lib/listen-address.ts';
import { printReadyLine } from '../../lib/ready-line.ts';
import { onShutdown } from '../../lib/shutdown.ts';
import { startCellSimulator } from './simulator.ts';

function hostPort(v: string): string {
  if (!/^[^:\s]*:\d{1,5}$/.test(v)) throw new InvalidArgumentError('expected host:port');
  return v;
}

function nonNegative(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected an integer >= 0');
  return n;
}

async function main(): Promise<void> {
  const o = new Command('cell-sim')
    .description('serve the cell agent API over mutual TLS for every cell of a Compute Engine emulator')
    .requiredOption(
      '--compute-admin <url>',
      "the Compute Engine emulator's admin URL (http://host:port/admin)",
    )
    .option(
      '--listen <host:port>',
      'agent API address (the provider dials <cell IP>:<agentPort>)',
      hostPort,
      '0.0.0.0:6421',
    )
    .option('--zones <list>', 'zones to look cells up in', 'us-central1-a,us-central1-b')
    .option('--start-delay-ms <n>', 'PUT → Running delay', nonNegative, 0)
    .option('--metrics-listen <host:port>', 'Prometheus /metrics address', hostPort, '127.0.0.1:0')
    .showHelpAfterError()
    .parse()
    .opts<{
      computeAdmin: string;
      listen: string;
      zones: string;
      startDelayMs: number;
      metricsListen: string;
    }>();
  const log = createLogger('cell-sim');
  const sim = await startCellSimulator({
    listen: o.listen,
    computeAdmin: o.computeAdmin.replace(/\/$/, ''),
    zones: o.zones.split(',').filter(Boolean),
    startDelayMs: o.startDelayMs,
    log,
  });
  const metrics = createServer((req, res) => {
    if (req.url !== '/metrics') return void res.writeHead(404).end('not found\n');
    void sim.registry.metrics().then((text) => {
      res.writeHead(200, { 'content-type': sim.registry.contentType });
      res.end(text);
    });
  });
  const metricsAt = splitHostPort(o.metricsListen, '127.0.0.1');
  metrics.listen(metricsAt.port, metricsAt.host);
  await once(metrics, 'listening');
  onShutdown(log, async () => {
    metrics.close();
    await sim.close();
  });
  const mport = (metrics.address() as AddressInfo).port;
  printReadyLine({
    service: 'cell-sim',
    listen: `${sim.host}:${sim.port}`,
    port: sim.port,
    pid: process.pid,
    metrics: `http://${metricsAt.host}:${mport}/metrics`,
  });
}

main().catch((err: unknown) => {
  console.error(`cell-sim: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
