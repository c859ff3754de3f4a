import assert from 'node:assert/strict';
import { capabilitiesFor, ContainerConfigError, DEFAULT_CAPABILITIES, processArgs } from './bundle.ts';
import type { PulledImage } from './image-source.ts';

const image = (config: PulledImage['config']): PulledImage => ({
  reference: 'r',
  digest: 'd',
  imageId: 'i',
  config,
  rootfs: '/',
  sizeBytes: 0,
});

describe('runtime config from pod spec and image', () => {
  it('combines command/args with the image entrypoint/cmd as the kubelet does', () => {
    const img = image({ Entrypoint: ['/ep'], Cmd: ['--default'] });
    const vars = new Map([['X', 'x']]);
    assert.deepEqual(processArgs({ name: 'c' }, img, vars), ['/ep', '--default']);
    assert.deepEqual(processArgs({ name: 'c', args: ['$(X)', '$$(X)'] }, img, vars), ['/ep', 'x', '$(X)']);
    assert.deepEqual(processArgs({ name: 'c', command: ['/bin/sh'] }, img, vars), ['/bin/sh']);
    assert.deepEqual(processArgs({ name: 'c', command: ['/bin/sh'], args: ['-c', 'true'] }, img, vars), [
      '/bin/sh',
      '-c',
      'true',
    ]);
    assert.throws(() => processArgs({ name: 'c' }, image({}), vars), ContainerConfigError);
  });

  it('adjusts the default capability set by add and drop', () => {
    assert.deepEqual(capabilitiesFor({ name: 'c' }), DEFAULT_CAPABILITIES);
    const caps = capabilitiesFor({
      name: 'c',
      securityContext: { capabilities: { add: ['NET_ADMIN'], drop: ['KILL', 'CAP_CHOWN'] } },
    });
    assert.ok(caps.includes('CAP_NET_ADMIN') && !caps.includes('CAP_KILL') && !caps.includes('CAP_CHOWN'));
    assert.deepEqual(
      capabilitiesFor({
        name: 'c',
        securityContext: { capabilities: { drop: ['ALL'], add: ['NET_BIND_SERVICE'] } },
      }),
      ['CAP_NET_BIND_SERVICE'],
    );
  });
});
