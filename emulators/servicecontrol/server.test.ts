import assert from 'node:assert/strict';
import { servicecontrol, type servicecontrol_v1 } from '@googleapis/servicecontrol';
import { createLogger } from '../../lib/log.ts';
import { createMetricsRegistry } from '../../lib/metrics.ts';
import { startServiceControlEmulator, type ServiceControlEmulator } from './server.ts';

const SERVICE = 'kip.mp-kip-test.appspot.com';

function op(id: string, value: string, consumerId = 'project:acme'): servicecontrol_v1.Schema$Operation {
  const t = '2026-01-01T00:00:00Z';
  return {
    operationId: id,
    operationName: `${SERVICE}/report`,
    consumerId,
    startTime: t,
    endTime: '2026-01-01T00:01:00Z',
    userLabels: { 'goog-ubb-agent-id': 'a' },
    metricValueSets: [
      {
        metricName: `${SERVICE}/cell_seconds`,
        metricValues: [{ startTime: t, endTime: t, int64Value: value }],
      },
    ],
  };
}

describe('Service Control emulator (through @googleapis/servicecontrol)', () => {
  let emu: ServiceControlEmulator;
  let sc: servicecontrol_v1.Servicecontrol;

  beforeEach(async () => {
    emu = await startServiceControlEmulator(0, {
      config: { services: [SERVICE], consumers: { 'project:broke': 'BILLING_DISABLED' } },
      log: createLogger('test', 'silent'),
      registry: createMetricsRegistry('t'),
    });
    sc = servicecontrol({ version: 'v1', rootUrl: emu.url });
  });
  afterEach(() => emu.close());

  it('answers check with no errors for a good consumer and BILLING_DISABLED for a disabled one', async () => {
    const ok = await sc.services.check({ serviceName: SERVICE, requestBody: { operation: op('c1', '1') } });
    assert.equal(ok.data.operationId, 'c1');
    assert.equal(ok.data.checkErrors, undefined);
    const bad = await sc.services.check({
      serviceName: SERVICE,
      requestBody: { operation: op('c2', '1', 'project:broke') },
    });
    assert.equal(bad.data.checkErrors?.[0]?.code, 'BILLING_DISABLED');
  });

  it('bills an operationId once however often it is reported, and totals per metric', async () => {
    for (const [id, v] of [
      ['a', '10'],
      ['b', '5'],
      ['a', '10'],
    ] as const) {
      const res = await sc.services.report({
        serviceName: SERVICE,
        requestBody: { operations: [op(id, v)] },
      });
      assert.deepEqual(res.data.reportErrors, []);
    }
    const res = await fetch(new URL('/admin/operations', emu.url));
    const body = (await res.json()) as {
      operations: unknown[];
      totals: Record<string, unknown>;
      duplicates: number;
    };
    assert.equal(body.operations.length, 2);
    assert.equal(body.duplicates, 1);
    assert.deepEqual(body.totals[`${SERVICE}/cell_seconds`], { int64Value: '15', operations: 2 });
  });

  it('rejects invalid operations with a reportError naming the field, and unknown services with 404', async () => {
    const bad = { ...op('x', '1'), consumerId: 'acme' };
    const res = await sc.services.report({ serviceName: SERVICE, requestBody: { operations: [bad] } });
    assert.equal(res.data.reportErrors?.[0]?.status?.code, 3);
    assert.match(res.data.reportErrors?.[0]?.status?.message ?? '', /consumerId/);
    await assert.rejects(
      sc.services.report({ serviceName: 'other.example.com', requestBody: { operations: [op('y', '1')] } }),
      (e: { status?: number }) => e.status === 404,
    );
    assert.equal(emu.operations.list().length, 0);
  });

  it('injects faults from the admin endpoint: a 503 the client sees, and a reply lost after billing', async () => {
    const put = await fetch(new URL('/admin/faults', emu.url), {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ faults: [{ method: 'report', status: 503, count: 1, afterRecord: true }] }),
    });
    assert.equal(put.status, 200);
    await assert.rejects(
      sc.services.report({ serviceName: SERVICE, requestBody: { operations: [op('z', '7')] } }),
      (e: { status?: number }) => e.status === 503,
    );
    // The retry with the same operationId succeeds and is not billed twice.
    await sc.services.report({ serviceName: SERVICE, requestBody: { operations: [op('z', '7')] } });
    assert.equal(emu.operations.totals()[`${SERVICE}/cell_seconds`]?.int64Value, '7');
    assert.equal(emu.operations.duplicates, 1);
  });

  it('refuses a malformed fault with 400 naming the field', async () => {
    const put = await fetch(new URL('/admin/faults', emu.url), {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ faults: [{ method: 'report', status: 'x' }] }),
    });
    assert.equal(put.status, 400);
    assert.match(((await put.json()) as { error: { message: string } }).error.message, /faults\[0\]\.status/);
  });
});
