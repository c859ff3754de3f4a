import assert from 'node:assert/strict';
import {
  CustomShapeError,
  customShape,
  fittingCustomShapes,
  parseCustomName,
  sharedCustomShape,
} from './custom-shapes.ts';

describe('custom machine shapes (GCE rules)', () => {
  it('builds valid E2, N2, N2D and N1 shapes with GCE names', () => {
    assert.equal(customShape('e2', 4, 8192).name, 'e2-custom-4-8192');
    assert.equal(customShape('n2', 36, 36 * 1024).name, 'n2-custom-36-36864');
    assert.equal(customShape('n2d', 48, 48 * 1024).name, 'n2d-custom-48-49152');
    assert.equal(customShape('n1', 1, 1024).name, 'custom-1-1024');
    const ext = customShape('n2', 2, 20 * 1024);
    assert.equal(ext.name, 'n2-custom-2-20480-ext');
    assert.equal(ext.extendedMemoryMiB, 4 * 1024);
    assert.equal(sharedCustomShape('small', 3072).name, 'e2-custom-small-3072');
  });

  it('refuses shapes GCE refuses, naming the rule', () => {
    const cases: Array<[() => unknown, RegExp]> = [
      [() => customShape('e2', 3, 3072), /vCPUs must be one of 2, 4, 6, 8/],
      [() => customShape('n2', 34, 34 * 1024), /n2 custom vCPUs/],
      [() => customShape('n2d', 6, 6 * 1024), /one of 2, 4, 8, 16/],
      [() => customShape('n1', 3, 3072), /n1 custom vCPUs/],
      [() => customShape('e2', 2, 1000), /multiple of 256 MiB/],
      [() => customShape('e2', 4, 1024), /at least 0.5 GiB per vCPU/],
      [() => customShape('n1', 2, 1536), /at least 0.9 GiB per vCPU/],
      [() => customShape('e2', 2, 17 * 1024), /no extended memory/],
      [() => customShape('n2', 2, 700 * 1024), /at most 624 GiB/],
      [() => customShape('t2d', 2, 8192), /no custom machine types/],
      [() => sharedCustomShape('micro', 3072), /1-2 GiB/],
      [() => parseCustomName('n2-custom-2-20480'), /needs the -ext suffix/],
      [() => parseCustomName('n2-custom-2-4096-ext'), /-ext is only for memory beyond/],
    ];
    for (const [fn, re] of cases)
      assert.throws(fn, (e: unknown) => e instanceof CustomShapeError && re.test(e.message));
  });

  it('reads custom names back', () => {
    assert.deepEqual(parseCustomName('custom-2-4096'), customShape('n1', 2, 4096));
    assert.deepEqual(parseCustomName('e2-custom-medium-6144'), sharedCustomShape('medium', 6144));
    assert.equal(parseCustomName('n2-standard-4'), undefined);
  });

  it('every shape offered as fitting is valid and holds the request', () => {
    for (const family of ['e2', 'n2', 'n2d', 'n1']) {
      for (const [cpu, mib] of [
        [0.2, 700],
        [1.1, 2304],
        [3, 40000],
        [7.5, 7000],
        [33, 200 * 1024],
      ] as const) {
        const shapes = fittingCustomShapes(family, cpu, mib);
        for (const s of shapes) {
          assert.ok((s.baselineVcpus ?? s.vcpus) >= cpu, `${s.name} cpu`);
          assert.ok(s.memoryMiB >= mib && s.memoryMiB % 256 === 0, `${s.name} memory`);
          assert.deepEqual(parseCustomName(s.name), s);
        }
      }
    }
    assert.ok(fittingCustomShapes('e2', 0.2, 700).some((s) => s.name === 'e2-custom-micro-1024'));
    assert.deepEqual(fittingCustomShapes('e2', 40, 1024), []);
  });
});
