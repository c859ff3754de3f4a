import assert from 'node:assert/strict';
import { parseCustomMachineType } from './custom-machine-type.ts';

const ok = (name: string) => {
  const r = parseCustomMachineType(name);
  assert.equal(r.kind, 'ok', `${name}: ${JSON.stringify(r)}`);
  return r.kind === 'ok' ? r.spec : undefined!;
};
const invalid = (name: string, re: RegExp) => {
  const r = parseCustomMachineType(name);
  assert.equal(r.kind, 'invalid', `${name} should be invalid, got ${r.kind}`);
  assert.match(r.kind === 'invalid' ? r.reason : '', re);
};

describe('custom machine types (GCE rules)', () => {
  it('accepts valid shapes of each family', () => {
    assert.deepEqual([ok('custom-1-1024').family, ok('custom-1-1024').guestCpus], ['n1', 1]);
    assert.equal(ok('n1-custom-2-4096').memoryMb, 4096);
    assert.equal(ok('e2-custom-4-9216').guestCpus, 4);
    assert.equal(ok('e2-custom-32-131072').memoryMb, 131072);
    assert.equal(ok('n2-custom-36-36864').guestCpus, 36);
    assert.equal(ok('n2-custom-2-32768-ext').memoryMb, 32768);
    assert.equal(ok('n2d-custom-48-49152').family, 'n2d');
    assert.equal(ok('custom-2-20480-ext').memoryMb, 20480);
    const micro = ok('e2-custom-micro-2048');
    assert.equal(micro.isSharedCpu, true);
    assert.equal(ok('e2-custom-medium-6144').memoryMb, 6144);
  });

  it('refuses memory that is not a multiple of 256 MiB with GCE message', () => {
    invalid('n1-custom-1-921', /^Memory should be a multiple of 256MiB, while 921MiB is requested\.$/);
    invalid('e2-custom-2-3000', /multiple of 256MiB/);
  });

  it('refuses vCPU counts outside each family rule', () => {
    invalid('custom-3-3840', /Number of vCPUs should be 1 or an even number/);
    invalid('e2-custom-1-1024', /even number between 2 and 32/);
    invalid('e2-custom-34-34816', /even number between 2 and 32/);
    invalid('n2-custom-34-34816', /multiple of 4 between 36 and 128/);
    invalid('n2d-custom-6-6144', /one of 2, 4, 8, 16/);
  });

  it('enforces memory per vCPU and extended memory rules', () => {
    invalid('custom-2-1536', /at least 2048MiB for 2 vCPUs/);
    invalid('custom-1-7168', /at most 6656MiB for 1 vCPUs.*extended memory/);
    invalid('e2-custom-2-17408', /at most 16384MiB/);
    invalid('e2-custom-2-17408-ext', /Extended memory is not available for e2/);
    invalid('n2-custom-2-640000-ext', /at most 638976MiB with extended memory/);
    invalid('e2-custom-micro-3072', /between 1024MiB and 2048MiB for e2-custom-micro/);
  });

  it('knows which families have no custom shapes', () => {
    assert.equal(parseCustomMachineType('t2d-custom-2-8192').kind, 'unknown');
    assert.equal(parseCustomMachineType('custom-abc').kind, 'unknown');
    assert.equal(parseCustomMachineType('e2-standard-4').kind, 'not-custom');
  });
});
