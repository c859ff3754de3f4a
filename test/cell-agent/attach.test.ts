import assert from 'node:assert/strict';
import type { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import WebSocket from 'ws';
import { CellAgentError, type AttachSession } from '../../lib/cell-agent-client.ts';
import { makePod, waitForStatus, type TestAgent, useImageAgent } from './support.ts';

/** Collects what a stream delivers; `until` waits for a pattern. */
function collect(stream: Readable) {
  let buf = '';
  const waiters: (() => void)[] = [];
  stream.on('data', (d: Buffer) => {
    buf += d.toString();
    for (const w of waiters.splice(0)) w();
  });
  return {
    get text() {
      return buf;
    },
    async until(want: RegExp | ((s: string) => boolean), timeoutMs = 10_000): Promise<string> {
      const deadline = Date.now() + timeoutMs;
      const re = want;
      const ok = () => (typeof re === 'function' ? re(buf) : re.test(buf));
      while (!ok()) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out waiting for ${re} in ${JSON.stringify(buf)}`);
        await new Promise<void>((r) => {
          const t = setTimeout(r, left);
          waiters.push(() => (clearTimeout(t), r()));
        });
      }
      return buf;
    },
  };
}

describe('cell agent: attach', function () {
  this.timeout(60_000);
  let agent: TestAgent;
  let image: string;
  const sessions: AttachSession[] = [];

  // Registered first, so sessions close before the cell is freed.
  afterEach(() => {
    for (const s of sessions.splice(0)) s.close();
  });
  useImageAgent((s) => ({ agent, image } = s));

  const attach = (container: string, opts: { stdin?: boolean; stdout?: boolean; stderr?: boolean }) => {
    const s = agent.client.attach(container, { stdout: true, stderr: true, ...opts });
    sessions.push(s);
    return s;
  };
  const running = (name: string) =>
    waitForStatus(agent.client, (s) => !!s.containerStatuses.find((c) => c.name === name)?.state.running);
  /** The agent's refusal of an attach, from the session's `done`. */
  const refusal = async (s: AttachSession) => {
    const err = await s.done.then(
      () => assert.fail('attach was accepted'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof CellAgentError, String(err));
    return err;
  };

  it('streams output written after attaching to every attached client; the log keeps everything', async () => {
    await agent.client.putPod({
      pod: makePod('ticker', {
        containers: [
          {
            name: 'tick',
            image,
            command: [
              'sh',
              '-c',
              'i=0; while :; do i=$((i+1)); echo "out $i"; echo "err $i" >&2; sleep 0.1; done',
            ],
          },
        ],
      }) as never,
    });
    await running('tick');
    // Attach once the container has been writing for a while: what came before is not replayed.
    await collect(await agent.client.logs('tick', { follow: true })).until(/out 5\n/);
    const a = attach('tick', {});
    const b = attach('tick', { stderr: false });
    const [aOut, aErr, bOut, bErr] = [a.stdout, a.stderr, b.stdout, b.stderr].map(collect);
    await aOut.until(/(out \d+\n)[^]*out \d+\n[^]*out \d+\n/);
    await aErr.until(/err \d+\n[^]*err \d+\n/);
    await bOut.until(/out \d+\n[^]*out \d+\n[^]*out \d+\n/);
    const numbers = (s: string, tag: string) =>
      [...s.matchAll(new RegExp(`${tag} (\\d+)`, 'g'))].map((m) => Number(m[1]));
    const seenA = numbers(aOut.text, 'out');
    assert.ok(seenA[0]! > 5, `first line seen ${seenA[0]}: output from before the attach is not replayed`);
    assert.deepEqual(
      seenA,
      seenA.map((_, i) => seenA[0]! + i),
      'consecutive lines, nothing lost',
    );
    assert.ok(numbers(aErr.text, 'err').length >= 2, 'stderr on its own channel');
    assert.equal(bErr.text, '', 'a client that did not ask for stderr gets none');
    assert.ok(
      numbers(bOut.text, 'out').some((n) => seenA.includes(n)),
      'both clients see the same lines at the same time',
    );
    assert.match(await agent.client.metricsText(), /^kip_cell_agent_attach_sessions 2$/m);
    // Detaching one client leaves the other attached and the container running.
    b.close();
    const before = numbers(aOut.text, 'out').length;
    await aOut.until((t) => numbers(t, 'out').length >= before + 3);
    const log = await text(await agent.client.logs('tick'));
    // The whole output from the start (stdout and stderr are separate pipes, so their lines may
    // interleave either way).
    assert.match(log, /^(out 1\nerr 1\n|err 1\nout 1\n)/);
    assert.match(log, /\nout 2\n/);
    assert.ok(log.includes(`out ${seenA.at(-1)}\n`), 'the log file is written as before');
    const s = await agent.client.getStatus();
    assert.equal(s.containerStatuses[0]!.restartCount, 0);
  });

  it('writes attached stdin into a stdin: true container (cat echoes it); stdin stays open across clients', async () => {
    await agent.client.putPod({
      pod: makePod('echo', { containers: [{ name: 'cat', image, command: ['cat'], stdin: true }] }) as never,
    });
    await running('cat');
    const writer = attach('cat', { stdin: true });
    const watcher = attach('cat', { stderr: false });
    const [out, watched] = [writer.stdout, watcher.stdout].map(collect);
    // The watcher may still be connecting; the echo it must see comes after it is attached.
    await new Promise((r) => setTimeout(r, 300));
    writer.write('hello through attach\n');
    await out.until(/hello through attach\n/);
    await watched.until(/hello through attach\n/);
    // Without stdinOnce the client's end of input does not close the container's stdin.
    writer.end();
    await new Promise((r) => setTimeout(r, 300));
    const second = attach('cat', { stdin: true });
    const out2 = collect(second.stdout);
    second.write('second client\n');
    await out2.until(/second client\n/);
    await watched.until(/hello through attach\nsecond client\n$/);
    const s = await agent.client.getStatus();
    assert.ok(s.containerStatuses[0]!.state.running, 'cat is still running');
    assert.equal(s.containerStatuses[0]!.restartCount, 0);
    // The log file has it too (read again briefly: the writer may still be flushing on a busy machine).
    let log = '';
    for (let i = 0; i < 20 && log !== 'hello through attach\nsecond client\n'; i++) {
      if (i) await new Promise((r) => setTimeout(r, 100));
      log = await text(await agent.client.logs('cat'));
    }
    assert.equal(log, 'hello through attach\nsecond client\n');
  });

  it('stdinOnce: the first client to end its stdin closes the container stdin; the container exit ends every attach', async () => {
    await agent.client.putPod({
      pod: makePod('once', {
        restartPolicy: 'Never',
        containers: [
          {
            name: 'once',
            image,
            command: ['sh', '-c', 'cat; echo stdin closed; sleep 1; echo bye'],
            stdin: true,
            stdinOnce: true,
          },
        ],
      }) as never,
    });
    await running('once');
    const first = attach('once', { stdin: true });
    const out = collect(first.stdout);
    first.write('only line\n');
    await out.until(/only line\n/);
    first.end();
    await out.until(/only line\nstdin closed\n/);
    // Closed for good: another client asking for stdin is told why; output-only attach still works.
    const late = attach('once', { stdin: true });
    const err = await refusal(late);
    assert.equal(err.code, 400);
    assert.match(err.message, /stdin of container "once" was closed .*stdinOnce/);
    const watcher = attach('once', {});
    const [r1, r2] = await Promise.all([first.done, watcher.done]);
    assert.equal(out.text, 'only line\nstdin closed\nbye\n');
    assert.equal(r1.status.status, 'Success');
    assert.equal(r2.status.status, 'Success');
    assert.equal(await text(watcher.stdout), 'bye\n');
    const s = await waitForStatus(agent.client, (x) => x.phase === 'Succeeded');
    assert.equal(s.containerStatuses[0]!.state.terminated!.exitCode, 0);
  });

  it('refuses with a clear 4xx: stdin without stdin: true, a container not running, an unknown container, tty', async () => {
    await agent.client.putPod({
      pod: makePod('errors', {
        restartPolicy: 'Never',
        containers: [
          { name: 'plain', image, command: ['sleep', '3600'] },
          { name: 'quick', image, command: ['true'] },
        ],
      }) as never,
    });
    await waitForStatus(
      agent.client,
      (s) =>
        !!s.containerStatuses.find((c) => c.name === 'plain')?.state.running &&
        !!s.containerStatuses.find((c) => c.name === 'quick')?.state.terminated,
    );
    let err = await refusal(attach('plain', { stdin: true }));
    assert.equal(err.code, 400);
    assert.match(err.message, /container "plain" was not started with stdin: true/);
    err = await refusal(attach('quick', {}));
    assert.equal(err.code, 400);
    assert.equal(err.message, 'container "quick" is not running (terminated: Completed)');
    err = await refusal(attach('nope', {}));
    assert.equal(err.code, 404);
    assert.match(err.message, /container "nope" not found/);

    // TTY is refused for the same reason as exec's: containers have no terminal.
    const ws = new WebSocket(
      `${agent.baseUrl.replace('https', 'wss')}/v1/pod/containers/plain/attach?stdout=1&tty=1`,
      ['v5.channel.k8s.io'],
      { ca: agent.pki.ca.certPem, cert: agent.pki.client.certPem, key: agent.pki.client.keyPem },
    );
    const [code, body] = await new Promise<[number, string]>((resolve, reject) => {
      ws.on('unexpected-response', (_req, res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve([res.statusCode ?? 0, b]));
      });
      ws.on('open', () => reject(new Error('tty attach was accepted')));
      ws.on('error', reject);
    });
    assert.equal(code, 400);
    assert.match(JSON.parse(body).message as string, /"tty": terminals are not supported; run without -t/);

    // The refusals left the running container alone.
    const s = await agent.client.getStatus();
    assert.ok(s.containerStatuses.find((c) => c.name === 'plain')!.state.running);
  });
});
