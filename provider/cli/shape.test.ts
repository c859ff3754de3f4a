import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

function kip(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'provider/cli/main.ts', ...args],
      { cwd: root },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('kip shape', function () {
  this.timeout(60_000);

  it('prints the choice as one JSON line', async () => {
    const r = await kip(['shape', '--cpu', '500m', '--memory', '1Gi']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    const out = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.deepEqual(Object.keys(out), ['machineType', 'zone', 'spot', 'hourlyPriceUSD', 'reason']);
    assert.equal(out.machineType, 'e2-medium');
    assert.equal(out.zone, 'us-central1-a');
    assert.equal(out.spot, false);
    assert.equal(out.hourlyPriceUSD, 0.033506);
    assert.match(String(out.reason), /needs 0.6 vCPU, 1.25 GiB.*list prices of \d{4}-\d{2}-\d{2}/);
  });

  it('takes GPUs, accelerators and annotations', async () => {
    const gpu = JSON.parse(
      (await kip(['shape', '--cpu', '1', '--memory', '4Gi', '--gpu', '1', '--accelerator', 'nvidia-l4']))
        .stdout,
    ) as { machineType: string };
    assert.equal(gpu.machineType, 'g2-standard-4');
    const spot = JSON.parse(
      (
        await kip([
          'shape',
          '--cpu',
          '2',
          '--memory',
          '8Gi',
          '--annotation',
          'pod.elotl.co/launch-type=spot',
          '--annotation',
          'pod.elotl.co/instance-type=n2-*',
        ])
      ).stdout,
    ) as { machineType: string; spot: boolean };
    assert.equal(spot.spot, true);
    assert.match(spot.machineType, /^n2-/);
  });

  it('refuses bad input in one readable line with a non-zero exit', async () => {
    for (const [args, re] of [
      [['--cpu', 'lots'], /^kip: --cpu: "lots" is not a Kubernetes quantity/],
      [
        ['--cpu', '1', '--annotation', 'pod.elotl.co/instance-type=e2-micro'],
        /^kip: machine type e2-micro .* cannot hold/,
      ],
      [['--gpu', '1', '--accelerator', 'nvidia-h100'], /^kip: accelerator nvidia-h100 is not offered/],
      [['--cpu', '500', '--memory', '1Gi'], /^kip: no machine type holds 500.1 vCPU/],
    ] as const) {
      const r = await kip(['shape', ...args]);
      assert.notEqual(r.code, 0);
      assert.equal(r.stdout, '');
      const lines = r.stderr.split('\n').filter((l) => l && !l.startsWith('npm warn'));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, re);
    }
  });
});
