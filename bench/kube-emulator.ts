/**
 * Kube emulator throughput: creates, merge-patches and deletes N configmaps from concurrent
 * clients while 10 watchers follow the namespace, then checks that every watcher saw every
 * event exactly once and in resourceVersion order.
 *
 *   npx tsx bench/kube-emulator.ts [--objects 5000] [--concurrency 64] [--watchers 10]
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { startNpmScript } from '../test/support/process.ts';

const { values } = parseArgs({
  options: {
    objects: { type: 'string', default: '5000' },
    concurrency: { type: 'string', default: '64' },
    watchers: { type: 'string', default: '10' },
  },
});
const N = Number(values.objects);
const CONCURRENCY = Number(values.concurrency);
const WATCHERS = Number(values.watchers);

interface WatcherState {
  events: number;
  lastRv: number;
  outOfOrder: number;
  seen: Map<string, number>;
  lastAt: number;
  req: http.ClientRequest;
}

function watch(url: string, rv: string): Promise<WatcherState> {
  return new Promise((resolve, reject) => {
    const state = {
      events: 0,
      lastRv: 0,
      outOfOrder: 0,
      seen: new Map<string, number>(),
      lastAt: 0,
    } as WatcherState;
    const req = http.get(
      `${url}/api/v1/namespaces/bench/configmaps?watch=true&resourceVersion=${rv}`,
      (res) => {
        if (res.statusCode !== 200) return reject(new Error(`watch answered ${res.statusCode}`));
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            const ev = JSON.parse(line) as {
              type: string;
              object: { metadata: { name: string; resourceVersion: string } };
            };
            const rvNum = Number(ev.object.metadata.resourceVersion);
            if (rvNum <= state.lastRv) state.outOfOrder++;
            state.lastRv = rvNum;
            const key = `${ev.type}/${ev.object.metadata.name}`;
            state.seen.set(key, (state.seen.get(key) ?? 0) + 1);
            state.events++;
            state.lastAt = performance.now();
          }
        });
        resolve(state);
      },
    );
    req.on('error', reject);
    state.req = req;
  });
}

async function phase(
  pool: Pool,
  label: string | undefined,
  make: (i: number) => { method: 'POST' | 'PATCH' | 'DELETE'; path: string; body?: string; type?: string },
): Promise<number> {
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    for (let i = next++; i < N; i = next++) {
      const r = make(i);
      const res = await pool.request({
        method: r.method,
        path: r.path,
        headers: { 'content-type': r.type ?? 'application/json' },
        body: r.body,
      });
      const text = await res.body.text();
      if (res.statusCode >= 300)
        throw new Error(`${label ?? 'warm-up'} ${r.path}: ${res.statusCode} ${text}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const secs = (performance.now() - started) / 1000;
  const rate = N / secs;
  if (label) console.log(`${label.padEnd(8)} ${N} in ${secs.toFixed(2)} s: ${rate.toFixed(0)} writes/s`);
  return rate;
}

async function main(): Promise<void> {
  const emu = await startNpmScript('kube-emulator', ['--port', '0', '--history-size', String(N * 4)], {
    env: { LOG_LEVEL: 'warn' },
  });
  const url = String(emu.ready.url);
  const pool = new Pool(url, { connections: 16, pipelining: 1 });
  try {
    const ns = await pool.request({
      method: 'POST',
      path: '/api/v1/namespaces',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ metadata: { name: 'bench' } }),
    });
    await ns.body.text();
    // Warm both sides up (JIT, connections) in a namespace nobody watches.
    const warm = await pool.request({
      method: 'POST',
      path: '/api/v1/namespaces',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ metadata: { name: 'warm-up' } }),
    });
    await warm.body.text();
    await phase(pool, undefined, (i) => ({
      method: 'POST',
      path: '/api/v1/namespaces/warm-up/configmaps',
      body: JSON.stringify({ metadata: { name: `w-${i}` } }),
    }));
    await phase(pool, undefined, (i) => ({
      method: 'DELETE',
      path: `/api/v1/namespaces/warm-up/configmaps/w-${i}`,
    }));
    const list = await pool.request({ method: 'GET', path: '/api/v1/namespaces/bench/configmaps' });
    const rv = ((await list.body.json()) as { metadata: { resourceVersion: string } }).metadata
      .resourceVersion;
    const watchers = await Promise.all(Array.from({ length: WATCHERS }, () => watch(url, rv)));
    console.log(`emulator ${url}; ${N} objects, ${CONCURRENCY} concurrent clients, ${WATCHERS} watchers`);

    const started = performance.now();
    const body = (i: number) =>
      JSON.stringify({
        metadata: { name: `cm-${i}`, labels: { bench: 'yes' } },
        data: { index: String(i), payload: 'x'.repeat(200) },
      });
    const creates = await phase(pool, 'create', (i) => ({
      method: 'POST',
      path: '/api/v1/namespaces/bench/configmaps',
      body: body(i),
    }));
    const patches = await phase(pool, 'patch', (i) => ({
      method: 'PATCH',
      path: `/api/v1/namespaces/bench/configmaps/cm-${i}`,
      body: JSON.stringify({ data: { index: String(i + 1) } }),
      type: 'application/merge-patch+json',
    }));
    const deletes = await phase(pool, 'delete', (i) => ({
      method: 'DELETE',
      path: `/api/v1/namespaces/bench/configmaps/cm-${i}`,
    }));
    const writeSecs = (performance.now() - started) / 1000;

    const expected = 3 * N;
    const deadline = Date.now() + 60_000;
    while (watchers.some((w) => w.events < expected) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    const lastDelivery = Math.max(...watchers.map((w) => w.lastAt));
    const deliverSecs = (lastDelivery - started) / 1000;
    const delivered = watchers.reduce((n, w) => n + w.events, 0);
    let lost = 0;
    let duplicated = 0;
    let outOfOrder = 0;
    for (const w of watchers) {
      outOfOrder += w.outOfOrder;
      for (let i = 0; i < N; i++) {
        for (const t of ['ADDED', 'MODIFIED', 'DELETED']) {
          const c = w.seen.get(`${t}/cm-${i}`) ?? 0;
          if (c === 0) lost++;
          if (c > 1) duplicated += c - 1;
        }
      }
      w.req.destroy();
    }
    const writes = (3 * N) / writeSecs;
    const eventsPerSec = delivered / deliverSecs;
    console.log(`all     ${3 * N} writes in ${writeSecs.toFixed(2)} s: ${writes.toFixed(0)} writes/s`);
    console.log(
      `watch   ${delivered} events to ${WATCHERS} watchers in ${deliverSecs.toFixed(2)} s: ${eventsPerSec.toFixed(0)} events/s delivered`,
    );
    console.log(
      `check   lost ${lost}, duplicated ${duplicated}, out of order ${outOfOrder}: ${lost + duplicated + outOfOrder === 0 ? 'OK' : 'FAILED'}`,
    );
    console.log(
      JSON.stringify({
        bench: 'kube-emulator',
        objects: N,
        concurrency: CONCURRENCY,
        watchers: WATCHERS,
        createsPerSec: Math.round(creates),
        patchesPerSec: Math.round(patches),
        deletesPerSec: Math.round(deletes),
        writesPerSec: Math.round(writes),
        watchEventsPerSec: Math.round(eventsPerSec),
        eventsDelivered: delivered,
        eventsExpected: expected * WATCHERS,
        lost,
        duplicated,
        outOfOrder,
        ok: lost + duplicated + outOfOrder === 0,
      }),
    );
    if (lost + duplicated + outOfOrder > 0) process.exitCode = 1;
  } finally {
    await pool.close();
    await emu.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
