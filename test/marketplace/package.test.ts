import assert from 'node:assert/strict';
import { accessSync, constants, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { find, renderChart, root, renderer } from './render.ts';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const read = (p: string) => readFileSync(join(root, p), 'utf8');

describe('deployer image and apptest files', () => {
  // The first render builds tools/chart-render (Go), which takes a while on a busy machine.
  before(function () {
    this.timeout(180000);
    renderer();
  });

  it('builds FROM deployer_helm at the pinned tools tag, with the layout the deployer reads', () => {
    const dockerfile = read('deployer/Dockerfile');
    const pinned = read('deployer/MARKETPLACE_TOOLS_TAG').trim();
    assert.match(pinned, /^\d+\.\d+\.\d+$/);
    assert.match(dockerfile, new RegExp(`^ARG MARKETPLACE_TOOLS_TAG=${pinned.replace(/\./g, '\\.')}$`, 'm'));
    const froms = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    assert.equal(froms.at(-1), 'gcr.io/cloud-marketplace-tools/k8s/deployer_helm:${MARKETPLACE_TOOLS_TAG}');
    for (const dest of [
      '/data/chart/kip.tar.gz',
      '/data/schema.yaml',
      '/data-test/chart/kip.tar.gz',
      '/data-test/schema.yaml',
    ])
      assert.match(dockerfile, new RegExp(`COPY --from=build \\S+ ${dest}$`, 'm'), dest);
    // The deployer runs `helm template <name> <dir>/chart`: the tarball's top directory must be chart/.
    assert.match(dockerfile, /--transform 's,\^kip,chart,'/);
  });

  it('has testrunner suites whose actions are well formed and use only the env the tester pod sets', () => {
    const tester = find(renderChart({ testMode: true }), 'Pod', 'kip-tester')!;
    const env = new Set(((tester.spec as Obj).containers[0].env as Obj[]).map((e) => e.name as string));
    const suites = readdirSync(join(root, 'apptest/tester/tests')).filter((f) => f.endsWith('.yaml'));
    assert.ok(suites.length > 0);
    const names: string[] = [];
    for (const f of suites) {
      const text = read(`apptest/tester/tests/${f}`);
      for (const m of text.matchAll(/\{\{\s*\.Env\.([A-Z_]+)\s*\}\}/g))
        assert.ok(env.has(m[1]!), `${f}: ${m[1]} is not set on the tester pod`);
      const suite = parseYaml(text) as { actions: Obj[] };
      for (const a of suite.actions) {
        assert.equal(typeof a.name, 'string');
        const kinds = ['bashTest', 'httpTest', 'gcp'].filter((k) => a[k]);
        assert.equal(kinds.length, 1, `${a.name}: exactly one test kind`);
        if (a.bashTest) assert.ok(a.bashTest.script && a.bashTest.expect, `${a.name}: script and expect`);
        names.push(a.name as string);
      }
    }
    for (const what of [
      /provider StatefulSet is Ready/,
      /virtual node is registered and Ready/,
      /usage reporter answers \/status/,
    ])
      assert.ok(
        names.some((n) => what.test(n)),
        `a suite checks ${what}`,
      );
    accessSync(join(root, 'apptest/tester/tester.sh'), constants.X_OK);
    accessSync(join(root, 'deployer/scripts/uninstall.sh'), constants.X_OK);
  });

  it('ships a restore template whose claim is the StatefulSet claim of the chart', () => {
    const text = read('manifest/restore-pv.yaml.template');
    const sts = find(renderChart(), 'StatefulSet', 'kip-provider')!.spec as Obj;
    const template = sts.volumeClaimTemplates[0].metadata.name as string;
    assert.match(text, new RegExp(`name: ${template}-\\$\\{RELEASE\\}-provider-0`));
    assert.match(text, /volumeHandle: projects\/\$\{PROJECT\}\/zones\/\$\{ZONE\}\/disks\/\$\{DISK\}/);
  });
});
