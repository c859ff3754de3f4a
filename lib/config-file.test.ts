import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfigFile } from './config-file.ts';

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['cloud'],
  properties: {
    port: { type: 'integer', minimum: 0, maximum: 65535, default: 8080 },
    cloud: {
      type: 'object',
      required: ['zones'],
      properties: { zones: { type: 'array', items: { type: 'string' }, minItems: 1 } },
    },
  },
};

describe('config files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kip-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('fills defaults and accepts a valid file', () => {
    const cfg = loadConfigFile<{ port: number; cloud: { zones: string[] } }>(
      write('ok.yaml', 'cloud:\n  zones: [us-central1-a]\n'),
      schema,
    );
    assert.equal(cfg.port, 8080);
    assert.deepEqual(cfg.cloud.zones, ['us-central1-a']);
  });

  it('names the bad field', () => {
    assert.throws(
      () => loadConfigFile(write('bad.yaml', 'cloud:\n  zones: [3]\n'), schema),
      (e: unknown) =>
        e instanceof ConfigError && e.field === 'cloud.zones[0]' && /must be string/.test(e.message),
    );
    assert.throws(
      () => loadConfigFile(write('missing.yaml', 'port: 1\n'), schema),
      (e: unknown) => e instanceof ConfigError && e.field === 'cloud',
    );
    assert.throws(
      () => loadConfigFile(write('extra.yaml', 'cloud: {zones: [a]}\nprot: 1\n'), schema),
      (e: unknown) => e instanceof ConfigError && /"prot" is not a known field/.test(e.message),
    );
  });

  it('reports unreadable and malformed files in one line', () => {
    assert.throws(() => loadConfigFile(join(dir, 'nope.yaml'), schema), /cannot read/);
    assert.throws(() => loadConfigFile(write('yaml.yaml', 'cloud: [\n'), schema), /not valid YAML/);
  });
});
