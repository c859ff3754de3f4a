import assert from 'node:assert/strict';
import { buildEnv, expandVars } from './env.ts';

describe('env expansion', () => {
  it('expands $(VAR) as the kubelet does', () => {
    const vars = new Map([['A', 'x']]);
    const look = (n: string) => vars.get(n);
    assert.equal(expandVars('$(A)-$(B)-$$(A)-$A-$(', look), 'x-$(B)-$(A)-$A-$(');
    assert.equal(expandVars('$$$(A)', look), '$x');
  });

  it('layers spec env over image env, expanding only against earlier spec variables', () => {
    const { env } = buildEnv(
      ['PATH=/bin', 'IMG=1'],
      [
        { name: 'B', value: '$(C)' },
        { name: 'C', value: 'c' },
        { name: 'D', value: '$(C)$(IMG)' },
        { name: 'PATH', value: '/opt:$(PATH)' },
      ],
    );
    assert.deepEqual(env, ['PATH=/opt:$(PATH)', 'IMG=1', 'B=$(C)', 'C=c', 'D=c$(IMG)']);
  });
});
