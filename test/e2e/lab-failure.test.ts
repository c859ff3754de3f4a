/** A lab part that fails to start: the error names it and shows its log, and nothing is left behind. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'mocha';
import { isAlive, LabStartError } from '../../scripts/lab/daemon.ts';
import { labUp } from '../../scripts/lab/lab.ts';
import type { LabState } from '../../scripts/lab/state.ts';

describe('local lab start failure (e2e)', function () {
  this.timeout(120_000);

  const parent = mkdtempSync(join(tmpdir(), `kip-lab-fail-${process.pid}-`));
  after(() => rmSync(parent, { recursive: true, force: true }));

  it('names the failed part, shows the tail of its log, stops and removes everything', async () => {
    const dir = join(parent, 'lab');
    const seen: LabState[] = [];
    let err: unknown;
    try {
      await labUp({
        dir,
        registryPort: 0,
        seedImage: false,
        // A zone outside the region: the provider refuses its config at start.
        providerConfig: { cloud: { zones: ['europe-west1-b'] } },
        progress: ({ part, phase }) => {
          if (phase === 'start' && part === 'provider')
            seen.push(JSON.parse(readFileSync(join(dir, 'lab.json'), 'utf8')) as LabState);
        },
      });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof LabStartError, `expected a LabStartError, got ${String(err)}`);
    assert.equal(err.part, 'provider');
    assert.match(err.message, /^provider: exited with status 1 while starting/);
    assert.match((err as LabStartError & { tail: string }).tail, /europe-west1-b/);
    assert.equal(existsSync(dir), false, 'the lab directory is removed');
    const state = seen[0]!;
    for (const p of [state.etcd, state.compute, state.registry, state.kube])
      assert.equal(isAlive(p!.pid), false);
    const links = execFileSync('ip', ['-br', 'link'], { encoding: 'utf8' });
    assert.ok(!links.includes(state.compute!.network.bridge!), 'the bridge is removed');
  });
});
