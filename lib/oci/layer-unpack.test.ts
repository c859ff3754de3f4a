import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import type * as tar from 'tar-stream';
import { packTar } from '../../test/support/images.ts';
import { applyLayer, LayerFormatError } from './layer-unpack.ts';

type Entry = tar.Header extends infer H ? Partial<H> & { name: string; body?: string } : never;

function tarOf(entries: Entry[]): Promise<Buffer> {
  return packTar((pack) => {
    for (const { body, ...h } of entries) {
      pack.entry(
        { mode: h.type === 'directory' ? 0o755 : 0o644, mtime: new Date(1_700_000_000_000), ...h },
        body ?? '',
      );
    }
  });
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('layer unpacking', () => {
  let tmp: string;
  let root: string;
  let n = 0;
  beforeEach(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'kip-layer-'));
    root = path.join(tmp, 'rootfs');
  });
  afterEach(() => rmSync(tmp, { recursive: true, force: true }));

  async function apply(entries: Entry[], compress = true) {
    const raw = await tarOf(entries);
    const blob = compress ? gzipSync(raw) : raw;
    const file = path.join(tmp, `layer-${n++}`);
    await fs.writeFile(file, blob);
    await fs.mkdir(root, { recursive: true });
    const res = await applyLayer(root, file);
    assert.equal(res.digest, sha(blob));
    assert.equal(res.diffId, sha(raw));
    return res;
  }
  const read = (p: string) => fs.readFile(path.join(root, p), 'utf8');
  const exists = (p: string) =>
    fs.lstat(path.join(root, p)).then(
      () => true,
      () => false,
    );

  it('keeps files, directories, symlinks, hard links, owners, modes and times', async () => {
    const res = await apply([
      { name: './usr/', type: 'directory' },
      { name: 'usr/bin/tool', body: '#!/bin/sh\n', mode: 0o4755, uid: 1000, gid: 2000 },
      { name: 'usr/bin/alias', type: 'link', linkname: 'usr/bin/tool' },
      { name: 'usr/bin/sl', type: 'symlink', linkname: 'tool' },
      { name: 'etc/motd', body: 'hi', mode: 0o600 },
    ]);
    assert.equal(res.entries, 5);
    const st = await fs.stat(path.join(root, 'usr/bin/tool'));
    assert.equal(st.mode & 0o7777, 0o4755);
    assert.equal(st.uid, 1000);
    assert.equal(st.gid, 2000);
    assert.equal(st.mtimeMs, 1_700_000_000_000);
    assert.equal((await fs.stat(path.join(root, 'usr/bin/alias'))).ino, st.ino);
    assert.equal(await fs.readlink(path.join(root, 'usr/bin/sl')), 'tool');
    assert.equal((await fs.stat(path.join(root, 'etc/motd'))).mode & 0o777, 0o600);
    assert.equal(await read('etc/motd'), 'hi');
  });

  it('never writes through a symlink out of the root', async () => {
    const outside = path.join(tmp, 'outside');
    await fs.mkdir(outside);
    await apply([
      { name: 'abs', type: 'symlink', linkname: outside },
      { name: 'abs/pwned', body: 'x' },
      { name: 'rel', type: 'symlink', linkname: '../../../../../..' },
      { name: 'rel/etc/pwned2', body: 'y' },
    ]);
    assert.deepEqual(await fs.readdir(outside), []);
    // Resolved as the container would see them: inside the root.
    assert.equal(await read(path.join(outside, 'pwned')), 'x');
    assert.equal(await read('etc/pwned2'), 'y');
    // A later layer writing through the same link stays inside too.
    await apply([{ name: 'abs/again', body: 'z' }], false);
    assert.deepEqual(await fs.readdir(outside), []);
  });

  it('keeps entries that climb with .. inside the root and refuses hard links to what is not there', async () => {
    await apply([{ name: '../../escape', body: 'x' }]);
    assert.equal(
      await fs.lstat(path.join(tmp, 'escape')).then(
        () => true,
        () => false,
      ),
      false,
    );
    assert.equal(await read('escape'), 'x');
    // ../../../etc/passwd means the image's /etc/passwd, which this layer does not have.
    await assert.rejects(
      apply([{ name: 'passwd', type: 'link', linkname: '../../../etc/passwd' }]),
      (err: unknown) => err instanceof LayerFormatError && /points to missing/.test(err.message),
    );
  });

  it('refuses a symlink loop on the way to an entry', async () => {
    await assert.rejects(
      apply([
        { name: 'a', type: 'symlink', linkname: 'b' },
        { name: 'b', type: 'symlink', linkname: 'a' },
        { name: 'a/x', body: 'x' },
      ]),
      (err: unknown) =>
        err instanceof LayerFormatError && /too many levels of symbolic links/.test(err.message),
    );
  });

  it('applies whiteouts, including of directories, and ignores whiteouts of missing paths', async () => {
    await apply([
      { name: 'a/keep', body: '1' },
      { name: 'a/gone', body: '2' },
      { name: 'b/deep/file', body: '3' },
    ]);
    await apply([
      { name: 'a/.wh.gone', body: '' },
      { name: '.wh.b', body: '' },
      { name: 'nowhere/.wh.ghost', body: '' },
    ]);
    assert.equal(await read('a/keep'), '1');
    assert.equal(await exists('a/gone'), false);
    assert.equal(await exists('b'), false);
    assert.equal(await exists('nowhere'), false);
    assert.equal(await exists('a/.wh.gone'), false);
  });

  it('makes a directory opaque whatever the marker order, keeping what the same layer wrote', async () => {
    await apply([
      { name: 'd/lower1', body: 'l' },
      { name: 'd/sub/lower2', body: 'l' },
      { name: 'other/untouched', body: 'u' },
    ]);
    await apply([
      { name: 'd/', type: 'directory' },
      { name: 'd/sub/new', body: 'n' },
      { name: 'd/top', body: 't' },
      { name: 'd/.wh..wh..opq', body: '' },
    ]);
    assert.deepEqual((await fs.readdir(path.join(root, 'd'))).sort(), ['sub', 'top']);
    assert.deepEqual(await fs.readdir(path.join(root, 'd/sub')), ['new']);
    assert.equal(await read('other/untouched'), 'u');
  });

  it('replaces a directory by a file and a symlink by a directory', async () => {
    await apply([
      { name: 'x/inner', body: '1' },
      { name: 'y', type: 'symlink', linkname: '/x' },
    ]);
    await apply([
      { name: 'x', body: 'now a file' },
      { name: 'y/', type: 'directory' },
      { name: 'y/z', body: 'z' },
    ]);
    assert.equal(await read('x'), 'now a file');
    assert.equal((await fs.lstat(path.join(root, 'y'))).isDirectory(), true);
    assert.equal(await read('y/z'), 'z');
  });

  it('forgets a symlinked path once a directory replaces the symlink', async () => {
    await apply([
      { name: 'real/sub/old', body: 'o' },
      { name: 'link', type: 'symlink', linkname: 'real' },
    ]);
    await apply([
      { name: 'link/sub/through', body: 't' },
      { name: 'link/', type: 'directory' },
      { name: 'link/sub/own', body: 'n' },
    ]);
    assert.equal(await read('real/sub/through'), 't');
    assert.equal((await fs.lstat(path.join(root, 'link'))).isDirectory(), true);
    assert.equal(await read('link/sub/own'), 'n');
    assert.equal(await exists('real/sub/own'), false);
  });

  it('reads uncompressed layers and refuses a corrupt one', async () => {
    await apply([{ name: 'plain', body: 'p' }], false);
    assert.equal(await read('plain'), 'p');
    const file = path.join(tmp, 'corrupt');
    const gz = gzipSync(await tarOf([{ name: 'f', body: 'x'.repeat(10000) }]));
    gz[Math.floor(gz.length / 2)]! ^= 0xff;
    await fs.writeFile(file, gz);
    await assert.rejects(applyLayer(root, file));
  });
});
