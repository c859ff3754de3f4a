import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { ConfigError } from '../lib/config-file.ts';
import { loadCellAgentConfig, readTlsMaterial } from './config.ts';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n';

describe('cell agent config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kip-cell-agent-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('reads inline PEMs from the file and lets flags override settings', () => {
    const file = write(
      'cell.yaml',
      stringify({
        listen: '0.0.0.0:6421',
        dataDir: '/var/lib/kip',
        tls: { certPem: PEM, keyPem: KEY, clientCaPem: PEM },
        restartBackoff: { initialSeconds: 1 },
      }),
    );
    const cfg = loadCellAgentConfig([
      '--config',
      file,
      '--data-dir',
      dir,
      '--listen',
      '127.0.0.1:0',
      '--insecure-registry',
      'r:5000',
      '--insecure-registry',
      'q:5000',
    ]);
    assert.equal(cfg.listen, '127.0.0.1:0');
    assert.equal(cfg.dataDir, resolve(dir));
    assert.deepEqual(cfg.insecureRegistries, ['r:5000', 'q:5000']);
    assert.deepEqual(cfg.restartBackoff, { initialSeconds: 1, maxSeconds: 300, resetSeconds: 600 });
    assert.deepEqual(cfg.imagePullBackoff, { initialSeconds: 10, maxSeconds: 300 });
    const tls = readTlsMaterial(cfg);
    assert.equal(tls.cert, PEM);
    assert.equal(tls.key, KEY);
    // A flag naming a file replaces the inline PEM of the same item.
    const caFile = write('ca.pem', 'CA FROM FILE');
    assert.equal(
      readTlsMaterial(loadCellAgentConfig(['--config', file, '--client-ca', caFile])).ca,
      'CA FROM FILE',
    );
  });

  it('names the missing or bad setting in one line', () => {
    assert.throws(
      () => loadCellAgentConfig(['--listen', 'x:1']),
      (e: unknown) => e instanceof ConfigError && /--data-dir/.test(e.message),
    );
    assert.throws(
      () => loadCellAgentConfig(['--data-dir', dir, '--tls-cert', 'c', '--tls-key', 'k']),
      (e: unknown) => e instanceof ConfigError && /--client-ca/.test(e.message),
    );
    assert.throws(
      () => loadCellAgentConfig(['--config', write('bad.yaml', 'restartBackoff: {initialSeconds: -1}\n')]),
      (e: unknown) => e instanceof ConfigError && e.field === 'restartBackoff.initialSeconds',
    );
    assert.throws(
      () => loadCellAgentConfig(['--bogus']),
      (e: unknown) => e instanceof ConfigError && /unknown option/.test(e.message),
    );
  });

  it('exits non-zero with one readable line when started with a bad config', () => {
    const r = spawnSync('node_modules/.bin/tsx', ['cell-agent/main.ts', '--data-dir', dir], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(r.status, 2);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      /^cell-agent: config: --tls-cert \(or tls\.certFile \/ tls\.certPem\) is required\n$/,
    );
  });
});
