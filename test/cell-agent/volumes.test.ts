/**
 * PUT /v1/pod/volumes on the real agent: a running container sees replaced volume files, never a
 * half-written one; subPath mounts keep their content; bad requests are refused with the field.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { CellAgentError } from '../../lib/cell-agent-client.ts';
import { isTerminal, makePod, waitForStatus, type TestAgent, useImageAgent } from './support.ts';

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

describe('cell agent: replacing volume files of a running pod', function () {
  this.timeout(60_000);
  let agent: TestAgent;
  let image: string;
  useImageAgent((s) => ({ agent, image } = s));

  const exec = async (container: string, command: string[]) => {
    const s = agent.client.exec(container, command, { stdout: true, stderr: true });
    const [stdout, , r] = await Promise.all([text(s.stdout), text(s.stderr), s.done]);
    return { stdout, exitCode: r.exitCode };
  };
  const refused = async (p: Promise<unknown>, code: number, field?: string): Promise<string> => {
    const err = await p.then(
      () => assert.fail(`expected a ${code}`),
      (e: unknown) => e,
    );
    assert.ok(err instanceof CellAgentError, String(err));
    assert.equal(err.code, code, err.message);
    if (field) assert.equal(err.status?.details?.causes?.[0]?.field, field);
    return err.message;
  };

  it('swaps a volume atomically: a container reading it in a loop sees only whole versions', async () => {
    await refused(agent.client.putVolumes({ uid: 'x', volumes: {} }), 404);
    // Each version is 256 KiB, so a write that is not atomic would be seen half done.
    const versions = Array.from({ length: 25 }, (_, i) =>
      Buffer.alloc(256 * 1024, String.fromCharCode(97 + (i % 26)) + String(i)),
    );
    const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
    const pod = makePod('reader', {
      restartPolicy: 'Never',
      containers: [
        {
          name: 'reader',
          image,
          command: [
            'sh',
            '-c',
            // One more read once stop appears: a slow reader may not have reached the last version.
            'last=; n=0; see() { h=$(md5sum /etc/blob/data | cut -c1-32); ' +
              'if [ "$h" != "$last" ]; then echo "seen $h"; last=$h; fi; n=$((n+1)); }; ' +
              'until [ -e /etc/blob/stop ]; do see; done; see; echo "reads $n"',
          ],
          volumeMounts: [{ name: 'blob', mountPath: '/etc/blob' }],
        },
      ],
      volumes: [{ name: 'blob', secret: { secretName: 'blob' } }],
    });
    const uid = pod.metadata.uid;
    await agent.client.putPod({
      pod: pod as never,
      volumes: { blob: { files: { data: b64(versions[0]!) } } },
    });
    await waitForStatus(agent.client, (s) => !!s.containerStatuses[0]?.state.running);
    for (const v of versions.slice(1)) {
      const reply = await agent.client.putVolumes({ uid, volumes: { blob: { files: { data: b64(v) } } } });
      assert.deepEqual(reply, { uid, changed: ['blob'] });
      await new Promise((r) => setTimeout(r, 40));
    }
    await agent.client.putVolumes({
      uid,
      volumes: { blob: { files: { data: b64(versions.at(-1)!), stop: b64('') } } },
    });
    const s = await waitForStatus(agent.client, isTerminal);
    assert.equal(s.phase, 'Succeeded', JSON.stringify(s.containerStatuses));
    const out = await text(await agent.client.logs('reader'));
    const seen = [...out.matchAll(/^seen (\w+)$/gm)].map((m) => m[1]!);
    const known = new Set(versions.map(md5));
    const torn = seen.filter((h) => !known.has(h));
    assert.deepEqual(torn, [], `the reader saw content that was no version sent:\n${out}`);
    assert.equal(seen[0], md5(versions[0]!));
    assert.equal(seen.at(-1), md5(versions.at(-1)!), out);
    assert.ok(seen.length >= 3, `the reader saw the content change: ${out}`);
  });

  it('replaces files a running container reads, removes dropped ones, keeps subPath mounts as started', async () => {
    const pod = makePod('files', {
      containers: [
        {
          name: 'app',
          image,
          command: ['sleep', '3600'],
          volumeMounts: [
            { name: 'cfg', mountPath: '/etc/cfg' },
            { name: 'cfg', mountPath: '/etc/pinned', subPath: 'a' },
            { name: 'sa', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' },
            { name: 'scratch', mountPath: '/scratch' },
          ],
        },
      ],
      volumes: [
        { name: 'cfg', configMap: { name: 'cfg' } },
        {
          name: 'sa',
          projected: {
            defaultMode: 0o664,
            sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 600 } }],
          },
        },
        { name: 'scratch', emptyDir: {} },
      ],
    });
    const uid = pod.metadata.uid;
    await agent.client.putPod({
      pod: pod as never,
      volumes: {
        cfg: { files: { a: b64('one'), 'dir/b': b64('two') } },
        sa: { files: { token: b64('token-1') } },
      },
    });
    await waitForStatus(agent.client, (s) => !!s.containerStatuses[0]?.state.running);
    const volDir = (name: string) => join(agent.dataDir, 'data', 'pods', uid, 'volumes', name);
    const firstData = readlinkSync(join(volDir('cfg'), '..data'));
    assert.match(firstData, /^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d+$/);
    assert.equal(
      readlinkSync(join(volDir('cfg'), 'a')),
      '..data/a',
      'user-visible names link through ..data',
    );

    const reply = await agent.client.putVolumes({
      uid,
      volumes: {
        cfg: { files: { a: b64('uno'), c: b64('three') } },
        sa: { files: { token: b64('token-2') } },
      },
    });
    assert.deepEqual(reply.changed.sort(), ['cfg', 'sa']);
    const cat = async (path: string) => (await exec('app', ['cat', path])).stdout;
    assert.equal(await cat('/etc/cfg/a'), 'uno');
    assert.equal(await cat('/etc/cfg/c'), 'three');
    assert.equal((await exec('app', ['test', '-e', '/etc/cfg/dir'])).exitCode, 1, 'dir/b was dropped');
    assert.equal(await cat('/var/run/secrets/kubernetes.io/serviceaccount/token'), 'token-2');
    const mode = await exec('app', [
      'stat',
      '-L',
      '-c',
      '%a',
      '/var/run/secrets/kubernetes.io/serviceaccount/token',
    ]);
    assert.equal(mode.stdout.trim(), '664', 'the volume defaultMode, on the replaced file too');
    assert.equal(await cat('/etc/pinned'), 'one', 'a subPath mount keeps the content it started with');
    // One timestamped directory is left, the one ..data names.
    const stamped = readdirSync(volDir('cfg')).filter((n) => /^\.\.\d/.test(n));
    assert.deepEqual(stamped, [readlinkSync(join(volDir('cfg'), '..data'))]);
    assert.notEqual(stamped[0], firstData);

    // The same content again changes nothing.
    const again = await agent.client.putVolumes({
      uid,
      volumes: { cfg: { files: { a: b64('uno'), c: b64('three') } } },
    });
    assert.deepEqual(again, { uid, changed: [] });
    assert.deepEqual(
      readdirSync(volDir('cfg')).filter((n) => /^\.\.\d/.test(n)),
      stamped,
    );

    // Refusals name what is wrong, and leave the files as they were.
    const msg409 = await refused(
      agent.client.putVolumes({ uid: 'another-uid', volumes: { cfg: { files: {} } } }),
      409,
      'uid',
    );
    assert.match(msg409, /another-uid/);
    assert.match(
      await refused(agent.client.putVolumes({ uid, volumes: { nope: { files: {} } } }), 400, 'volumes.nope'),
      /no volume "nope"/,
    );
    assert.match(
      await refused(
        agent.client.putVolumes({ uid, volumes: { scratch: { files: {} } } }),
        400,
        'volumes.scratch',
      ),
      /emptyDir/,
    );
    await refused(
      agent.client.putVolumes({ uid, volumes: { cfg: { files: { '../x': b64('x') } } } }),
      400,
      'volumes.cfg.files.../x',
    );
    await refused(
      agent.client.putVolumes({ uid, volumes: { cfg: { files: { '..data': b64('x') } } } }),
      400,
      'volumes.cfg.files...data',
    );
    await refused(
      agent.client.putVolumes({ uid, volumes: { cfg: { files: { a: 'not base64!' } } } }),
      400,
      'volumes.cfg.files.a',
    );
    await refused(agent.client.putVolumes({ volumes: {} } as never), 400, 'uid');
    assert.equal(await cat('/etc/cfg/a'), 'uno');
  });
});
