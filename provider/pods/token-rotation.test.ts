import assert from 'node:assert/strict';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import type { PutVolumesReply, PutVolumesRequest } from '../../lib/cell-agent-api.ts';
import { CellAgentError } from '../../lib/cell-agent-client.ts';
import { createLogger } from '../../lib/log.ts';
import { eventually, startTestKube, type TestKube } from '../testing/kube.ts';
import type { EventType, PodEventRecorder } from './events.ts';
import { resolveDispatch } from './pod-dispatch.ts';
import { TokenRotation, type TokenRotationOptions } from './token-rotation.ts';

interface Claims {
  iat: number;
  exp: number;
  aud: string[];
  'kubernetes.io': { pod: { uid: string } };
}
const claims = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as Claims;
const fromB64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString();

/** Records what the provider would send to the cell agent; `fail` makes it refuse. */
class RecordingAgent {
  puts: PutVolumesRequest[] = [];
  attempts = 0;
  fail?: CellAgentError;
  putVolumes(req: PutVolumesRequest): Promise<PutVolumesReply> {
    this.attempts++;
    if (this.fail) return Promise.reject(this.fail);
    this.puts.push(req);
    return Promise.resolve({ uid: req.uid, changed: Object.keys(req.volumes) });
  }
  token(i = -1): string {
    return fromB64(this.puts.at(i)?.volumes.sa?.files.token);
  }
}

class RecordingEvents implements PodEventRecorder {
  events: { type: EventType; reason: string; message: string }[] = [];
  record(_pod: V1Pod, type: EventType, reason: string, message: string): Promise<void> {
    this.events.push({ type, reason, message });
    return Promise.resolve();
  }
}

describe('token rotation and volume refresh (kube emulator)', function () {
  this.timeout(30_000);
  let kube: TestKube;
  let core: CoreV1Api;
  const rotations: TokenRotation[] = [];
  let seq = 0;

  before(async () => {
    kube = await startTestKube();
    core = kube.kc.makeApiClient(CoreV1Api);
    await core.createNamespacedServiceAccount({ namespace: 'default', body: { metadata: { name: 'app' } } });
    await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: 'settings' }, data: { mode: 'fast' } },
    });
  });
  afterEach(() => rotations.splice(0).forEach((r) => r.stop()));
  after(() => kube?.stop());

  /** A pod that exists in the API (tokens are bound to it) with a token and a ConfigMap volume. */
  async function makePod(expirationSeconds: number, withConfig = false): Promise<V1Pod> {
    return core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: `p${seq++}` },
        spec: {
          serviceAccountName: 'app',
          containers: [{ name: 'c', image: 'busybox' }],
          volumes: [
            {
              name: 'sa',
              projected: {
                sources: [{ serviceAccountToken: { path: 'token', audience: 'vault', expirationSeconds } }],
              },
            },
            ...(withConfig ? [{ name: 'cfg', configMap: { name: 'settings' } }] : []),
          ],
        },
      },
    });
  }

  function start(opts: Partial<TokenRotationOptions> = {}) {
    const events = new RecordingEvents();
    const r = new TokenRotation({
      core,
      events,
      log: createLogger('test', 'silent'),
      configRefreshSeconds: 0,
      ...opts,
    });
    rotations.push(r);
    return { r, events };
  }

  it('schedules a token at 80% of its lifetime, or at 24 h for longer ones', async () => {
    const { r } = start();
    for (const [seconds, dueAfter] of [
      [3600, 2880],
      [172_800, 86_400],
    ] as const) {
      const pod = await makePod(seconds);
      const resolved = await resolveDispatch(pod, { core });
      const iat = claims(fromB64(resolved.request.volumes!.sa!.files.token)).iat;
      r.dispatched(pod, () => new RecordingAgent(), resolved);
      assert.equal(r.nextRotation(pod.metadata!.uid!)?.getTime(), (iat + dueAfter) * 1000);
      r.forget(pod.metadata!.uid!);
      assert.equal(r.nextRotation(pod.metadata!.uid!), undefined);
    }
  });

  it('re-requests a due token with the same audience and lifetime, bound to the pod, and sends it to the agent', async () => {
    // 0.2% of the 600 s minimum: due 1.2 s after issue.
    const { r, events } = start({ tokenRefreshFraction: 0.002 });
    const pod = await makePod(600);
    const resolved = await resolveDispatch(pod, { core });
    const agent = new RecordingAgent();
    r.dispatched(pod, () => agent, resolved);
    const first = claims(fromB64(resolved.request.volumes!.sa!.files.token));
    await eventually(async () => agent.puts.length >= 2, 10_000, 'two rotations');
    const [a, b] = [claims(agent.token(0)), claims(agent.token(1))];
    for (const c of [a, b]) {
      assert.deepEqual(c.aud, ['vault']);
      assert.equal(c.exp - c.iat, 600);
      assert.equal(c['kubernetes.io'].pod.uid, pod.metadata!.uid);
    }
    assert.ok(a.iat >= first.iat + 1 && b.iat >= a.iat + 1, `${first.iat} < ${a.iat} < ${b.iat}`);
    assert.deepEqual(agent.puts[0]!.uid, pod.metadata!.uid);
    assert.deepEqual(Object.keys(agent.puts[0]!.volumes), ['sa']);
    assert.deepEqual(events.events, []);

    // Once forgotten, nothing more is sent.
    r.forget(pod.metadata!.uid!);
    const sent = agent.puts.length;
    await new Promise((res) => setTimeout(res, 2500));
    assert.equal(agent.puts.length, sent);
  });

  it('a failed rotation is a Warning event and is retried with backoff until the agent takes it', async () => {
    const { r, events } = start({
      tokenRefreshFraction: 0.002,
      retryInitialSeconds: 0.2,
      retryMaxSeconds: 5,
    });
    const pod = await makePod(600);
    const agent = new RecordingAgent();
    agent.fail = new CellAgentError(503, 'cell agent unreachable');
    r.dispatched(pod, () => agent, await resolveDispatch(pod, { core }));
    await eventually(async () => agent.attempts >= 3, 10_000, 'three attempts');
    // Attempts at about 1.2 s, then 0.2, 0.4, 0.8, 1.6 s apart: a handful in 3 s, not a tight loop.
    await new Promise((res) => setTimeout(res, 1500));
    assert.ok(agent.attempts <= 6, `attempts: ${agent.attempts}`);
    const failed = events.events.filter((e) => e.reason === 'TokenRotationFailed');
    assert.ok(failed.length >= 3);
    assert.equal(failed[0]!.type, 'Warning');
    assert.match(
      failed[0]!.message,
      /cannot rotate the service account token \(the current token expires at .*\): cell agent unreachable/,
    );
    agent.fail = undefined;
    await eventually(
      async () => agent.puts.length >= 1,
      10_000,
      'the rotation accepted once the agent answers',
    );
    assert.deepEqual(claims(agent.token()).aud, ['vault']);
  });

  it('a re-adopted pod gets new tokens soon, and ConfigMap changes are sent without a new token', async () => {
    const { r } = start({ adoptSpreadMs: 100, configRefreshSeconds: 0.3 });
    const pod = await makePod(3600, true);
    const agent = new RecordingAgent();
    r.adopted(pod, () => agent);
    await eventually(async () => agent.puts.length >= 1, 5000, 'tokens after adoption');
    const token = agent.token();
    assert.equal(claims(token)['kubernetes.io'].pod.uid, pod.metadata!.uid);
    assert.equal(fromB64(agent.puts[0]!.volumes.cfg?.files.mode), 'fast');
    // Sweeps with nothing changed send nothing.
    await new Promise((res) => setTimeout(res, 1000));
    assert.equal(agent.puts.length, 1);

    const cm = await core.readNamespacedConfigMap({ name: 'settings', namespace: 'default' });
    await core.replaceNamespacedConfigMap({
      name: 'settings',
      namespace: 'default',
      body: { ...cm, data: { mode: 'slow' } },
    });
    await eventually(async () => agent.puts.length >= 2, 5000, 'the ConfigMap change sent');
    assert.equal(fromB64(agent.puts[1]!.volumes.cfg?.files.mode), 'slow');
    assert.equal(agent.token(), token, 'the token is kept until it is due');
  });

  it('rewrites downward API files of labels when the pod is relabelled, and nothing else', async () => {
    const { r } = start();
    const pod = await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: `p${seq++}`, labels: { tier: 'web' } },
        spec: {
          containers: [{ name: 'c', image: 'busybox' }],
          volumes: [
            {
              name: 'info',
              downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }] },
            },
          ],
        },
      },
    });
    const agent = new RecordingAgent();
    r.dispatched(pod, () => agent, await resolveDispatch(pod, { core }));
    r.updated({ ...pod, status: { phase: 'Running' } });
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(agent.attempts, 0, 'a status change is not a volume change');
    r.updated({ ...pod, metadata: { ...pod.metadata, labels: { tier: 'gold' } } });
    await eventually(async () => agent.puts.length === 1, 5000, 'the labels file sent');
    assert.equal(fromB64(agent.puts[0]!.volumes.info?.files.labels), 'tier="gold"');
  });
});
