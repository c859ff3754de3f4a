import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { stringify } from 'yaml';
import { ConfigError } from '../lib/config-file.ts';
import { parseAgentConfig } from './config.ts';
import { ReporterHome } from './test-harness.ts';

const key = Buffer.from(
  JSON.stringify({ client_email: 'a@b.iam.gserviceaccount.com', private_key: 'k' }),
).toString('base64');

// The cases below reach into arbitrary config paths to break them one at a time.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;

function cfg(over: (c: Doc) => void = () => undefined): string {
  const c: Doc = {
    identities: [{ name: 'gcp', gcp: { encodedServiceAccountKey: '$AGENT_ENCODED_KEY' } }],
    metrics: [
      {
        name: 'requests',
        type: 'int',
        endpoints: [{ name: 'on_disk' }, { name: 'sc' }],
        aggregation: { bufferSeconds: 60 },
      },
      { name: 'instance_time', type: 'int', endpoints: [{ name: 'sc' }], passthrough: {} },
    ],
    endpoints: [
      { name: 'on_disk', disk: { reportDir: '/tmp/r', expireSeconds: 3600 } },
      {
        name: 'sc',
        servicecontrol: {
          identity: 'gcp',
          serviceName: 'svc.example.com',
          consumerId: '${AGENT_CONSUMER_ID}',
        },
      },
    ],
    sources: [
      {
        name: 'hb',
        heartbeat: {
          metric: 'instance_time',
          intervalSeconds: 60,
          value: { int64Value: 60 },
          labels: { auto: 'true' },
        },
      },
    ],
    filters: [{ addLabels: { labels: { cluster: 'c1' }, omitEmpty: true } }],
  };
  over(c);
  return stringify(c);
}

const env = { AGENT_ENCODED_KEY: key, AGENT_CONSUMER_ID: 'project:acme' };

function fails(text: string, pattern: RegExp, e: NodeJS.ProcessEnv = env): void {
  assert.throws(
    () => parseAgentConfig(text, 'config', e),
    (err: Error) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, pattern);
      assert.ok(!err.message.includes('\n'), 'one line');
      return true;
    },
  );
}

describe('usage reporter config (ubbagent format)', () => {
  it('parses ubbagent config with $VAR and ${VAR} substituted from the environment', () => {
    const c = parseAgentConfig(cfg(), 'config', env);
    assert.equal(c.endpoints[1]!.servicecontrol!.consumerId, 'project:acme');
    assert.equal(c.identities[0]!.gcp.encodedServiceAccountKey, key);
    assert.equal(c.metrics[0]!.aggregation!.bufferSeconds, 60);
    assert.deepEqual(c.sources[0]!.heartbeat.value, { int64Value: 60 });
  });

  it('accepts a literal serviceAccountKey, and a placeholder key when rootUrl is set', () => {
    parseAgentConfig(
      cfg(
        (c) =>
          (c.identities[0].gcp = {
            serviceAccountKey: JSON.stringify({ client_email: 'x', private_key: 'y' }),
          }),
      ),
      'config',
      env,
    );
    parseAgentConfig(
      cfg((c) => (c.endpoints[1].servicecontrol.rootUrl = 'http://127.0.0.1:1/')),
      'config',
      { ...env, AGENT_ENCODED_KEY: 'placeholder' },
    );
  });

  it('names the field of each mistake', () => {
    fails(cfg(), /environment variable AGENT_CONSUMER_ID is not set/, { AGENT_ENCODED_KEY: key });
    fails(cfg(), /identities\[0\]\.gcp\.encodedServiceAccountKey" is not base64 of a JSON/, {
      ...env,
      AGENT_ENCODED_KEY: 'placeholder',
    });
    fails(
      cfg((c) => (c.metrics[0].type = 'float')),
      /metrics\[0\]\.type/,
    );
    fails(
      cfg((c) => (c.metrics[1].aggregation = { bufferSeconds: 5 })),
      /metrics\[1\]" needs exactly one of aggregation/,
    );
    fails(
      cfg((c) => (c.metrics[0].aggregation.bufferSeconds = 0)),
      /metrics\[0\]\.aggregation\.bufferSeconds/,
    );
    fails(
      cfg((c) => (c.metrics[0].endpoints[1].name = 'nowhere')),
      /metrics\[0\]\.endpoints\[1\]\.name" names no endpoint/,
    );
    fails(
      cfg((c) => c.metrics.push({ ...c.metrics[0] })),
      /metrics\[2\]\.name" "requests" is defined twice/,
    );
    fails(
      cfg((c) => (c.endpoints[1].servicecontrol.identity = 'x')),
      /endpoints\[1\]\.servicecontrol\.identity/,
    );
    fails(
      cfg((c) => (c.endpoints[1].servicecontrol.consumerId = 'acme')),
      /endpoints\[1\]\.servicecontrol\.consumerId/,
    );
    fails(
      cfg((c) => delete c.endpoints[1].servicecontrol.serviceName),
      /endpoints\[1\]\.servicecontrol\.serviceName/,
    );
    fails(
      cfg((c) => (c.endpoints[0].disk.expireSeconds = -1)),
      /endpoints\[0\]\.disk\.expireSeconds/,
    );
    fails(
      cfg((c) => (c.sources[0].heartbeat.value = { doubleValue: 1 })),
      /sources\[0\]\.heartbeat\.value" must be/,
    );
    fails(
      cfg((c) => (c.sources[0].heartbeat.metric = 'x')),
      /sources\[0\]\.heartbeat\.metric/,
    );
    fails(
      cfg((c) => (c.metrics[0].colour = 'red')),
      /metrics\[0\]\.colour" is not a known field/,
    );
    fails('metrics: [', /not valid YAML/);
    fails(
      cfg((c) => delete c.metrics),
      /field "metrics"/,
    );
  });

  it('the CLI exits 2 with one line naming the field, and requires a state dir', function () {
    this.timeout(20000);
    const home = new ReporterHome();
    try {
      home.writeConfig(cfg((c) => (c.metrics[0].type = 'float')));
      const run = (args: string[]) =>
        spawnSync('npm', ['run', '-s', 'usage-reporter', '--', ...args], {
          env: { ...process.env, ...env, AGENT_STATE_DIR: '', AGENT_CONFIG_FILE: '', AGENT_LOCAL_PORT: '' },
          encoding: 'utf8',
        });
      const bad = run(home.flags());
      assert.equal(bad.status, 2);
      const lines = bad.stderr.split('\n').filter((l) => l && !l.startsWith('npm warn'));
      assert.equal(lines.length, 1, bad.stderr);
      assert.match(lines[0]!, /field "metrics\[0\]\.type" must be equal to one of the allowed values/);
      const noState = run(['--config', home.config, '--local-port', '0']);
      assert.equal(noState.status, 2);
      assert.match(noState.stderr, /--state-dir \(or AGENT_STATE_DIR\) is required/);
    } finally {
      home.remove();
    }
  });
});
