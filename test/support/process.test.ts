import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startProcess } from './process.ts';

describe('test process starter', () => {
  it('stops the server behind a shell that does not pass signals on', async () => {
    // The shell runs node as a child (not exec), as `npm run` does, so only a group signal reaches it.
    const script = `process.stdout.write(JSON.stringify({ ready: true, pid: process.pid }) + '\\n'); setInterval(() => {}, 1000);`;
    const started = await startProcess('sh', [
      '-c',
      `${process.execPath} -e "${script.replace(/"/g, '\\"')}"; true`,
    ]);
    const pid = started.ready.pid as number;
    assert.doesNotThrow(() => process.kill(pid, 0));
    const t0 = Date.now();
    await started.stop(5000);
    const state = (() => {
      try {
        return readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2];
      } catch {
        return 'gone';
      }
    })();
    assert.ok(state === 'gone' || state === 'Z', `server still running (state ${state})`);
    assert.ok(Date.now() - t0 < 4000, 'stop waited for the grace period instead of the server');
  });
});
