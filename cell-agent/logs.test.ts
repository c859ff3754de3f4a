import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { text } from 'node:stream/consumers';
import { ContainerLogWriter, streamLog } from './logs.ts';

describe('container log files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kip-logs-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const read = async (path: string, opts: Parameters<typeof streamLog>[1], finished = () => true) => {
    const out = new PassThrough();
    const done = streamLog(path, opts, out, finished, new AbortController().signal).then(() => out.end());
    const t = await text(out);
    await done;
    return t;
  };

  it('writes CRI records, joins partial lines and keeps the streams apart', async () => {
    const path = join(dir, 'a.log');
    const w = new ContainerLogWriter(path, 1 << 20);
    w.write('stdout', 'hel');
    w.write('stderr', 'oops\n');
    w.write('stdout', 'lo\nwor');
    w.close();
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    assert.match(lines[0]!, /^\S+Z stderr F oops$/);
    assert.match(lines[1]!, /^\S+Z stdout F hello$/);
    assert.match(lines[2]!, /^\S+Z stdout F wor$/);
    assert.equal(await read(path, {}), 'oops\nhello\nwor\n');
    assert.equal(await read(path, { tailLines: 1 }), 'wor\n');
  });

  it('caps each file, keeping one rotated file', async () => {
    const path = join(dir, 'b.log');
    const w = new ContainerLogWriter(path, 4096);
    for (let i = 0; i < 500; i++) w.write('stdout', `line ${i} ${'x'.repeat(40)}\n`);
    w.close();
    assert.ok(statSync(path).size <= 4096);
    assert.ok(existsSync(`${path}.1`) && statSync(`${path}.1`).size <= 4096);
    const all = (await read(path, {})).trim().split('\n');
    assert.match(all.at(-1)!, /^line 499 x+$/);
    assert.ok(all.length < 200, `only the newest lines survive (${all.length})`);
  });

  it('follows a growing file until the instance is finished', async () => {
    const path = join(dir, 'c.log');
    const w = new ContainerLogWriter(path, 1 << 20);
    w.write('stdout', 'first\n');
    let finished = false;
    const out = new PassThrough();
    const done = streamLog(path, { follow: true }, out, () => finished, new AbortController().signal).then(
      () => out.end(),
    );
    const collected = text(out);
    setTimeout(() => {
      w.write('stdout', 'second\n');
      w.close();
      finished = true;
    }, 300);
    await done;
    assert.equal(await collected, 'first\nsecond\n');
  });
});
