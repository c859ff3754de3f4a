import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfigFile } from '../../lib/config-file.ts';
import { AccessRules, authzConfigSchema, reviewAccess, type AuthzConfig } from './access-review.ts';

describe('kube emulator authorization rules', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kip-authz-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('loads deny rules from YAML and denies only what they match', () => {
    const cfg = loadConfigFile<AuthzConfig>(
      file(
        'ok.yaml',
        'deny:\n  - user: system:serviceaccount:kip:provider\n    resource: nodes\n    verb: delete\n  - group: guests\n    path: /metrics\n',
      ),
      authzConfigSchema,
    );
    const rules = new AccessRules(cfg);
    const review = (spec: Record<string, unknown>) =>
      (
        reviewAccess(rules, 'SubjectAccessReview', {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec,
        }).status as { allowed: boolean }
      ).allowed;
    assert.equal(
      review({
        user: 'system:serviceaccount:kip:provider',
        resourceAttributes: { verb: 'delete', resource: 'nodes', name: 'vk' },
      }),
      false,
    );
    assert.equal(
      review({
        user: 'system:serviceaccount:kip:provider',
        resourceAttributes: { verb: 'get', resource: 'nodes' },
      }),
      true,
    );
    assert.equal(
      review({
        user: 'someone',
        groups: ['guests'],
        nonResourceAttributes: { path: '/metrics', verb: 'get' },
      }),
      false,
    );
    assert.equal(
      review({
        user: 'someone',
        groups: ['staff'],
        nonResourceAttributes: { path: '/metrics', verb: 'get' },
      }),
      true,
    );
    assert.throws(() => review({ resourceAttributes: { verb: 'get' } }), /at least one of user or group/);
  });

  it('names the bad field of a rules file, and the emulator refuses to start with it', () => {
    const bad = file('bad.yaml', 'deny:\n  - user: x\n    verbs: [get]\n');
    assert.throws(
      () => loadConfigFile(bad, authzConfigSchema),
      (e: unknown) => e instanceof ConfigError && e.field === 'deny[0].verbs',
    );
    const r = spawnSync('npm', ['run', '-s', 'kube-emulator', '--', '--port', '0', '--authz-config', bad], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '', 'no ready line');
    assert.match(
      r.stderr.trim().split('\n').at(-1)!,
      /^kube-emulator: config .*bad.yaml: field "deny\[0\]\.verbs" is not a known field$/,
    );
    const port = spawnSync('npm', ['run', '-s', 'kube-emulator', '--', '--port', 'abc'], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.notEqual(port.status, 0);
    assert.match(port.stderr, /--port <port>.*must be an integer from 0 to 65535/);
  });
});
