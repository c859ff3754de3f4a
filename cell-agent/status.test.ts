import assert from 'node:assert/strict';
import type { ContainerStatus } from '../lib/cell-agent-api.ts';
import { podConditions, podPhase, qosClass, type PodFacts } from './status.ts';

const cs = (
  name: string,
  state: ContainerStatus['state'],
  extra: Partial<ContainerStatus> = {},
): ContainerStatus => ({
  name,
  state,
  lastState: {},
  ready: false,
  started: false,
  restartCount: 0,
  image: 'i',
  imageID: '',
  ...extra,
});
const facts = (
  restartPolicy: string,
  statuses: ContainerStatus[],
  initStatuses: ContainerStatus[] = [],
  terminating = false,
): PodFacts => ({
  pod: { spec: { restartPolicy, containers: [] } } as never,
  sandboxReady: true,
  terminating,
  initStatuses,
  statuses,
});
const done = (exitCode: number) => ({ terminated: { exitCode } });

describe('pod status mapping', () => {
  it('computes the phase like the kubelet', () => {
    assert.equal(
      podPhase(facts('Always', [cs('a', { waiting: { reason: 'ContainerCreating' } })])),
      'Pending',
    );
    assert.equal(podPhase(facts('Always', [cs('a', { running: {} })], [cs('i', done(0))])), 'Running');
    assert.equal(
      podPhase(facts('Always', [cs('a', { waiting: {} })], [cs('i', { running: {} })])),
      'Pending',
    );
    assert.equal(podPhase(facts('Never', [cs('a', { waiting: {} })], [cs('i', done(1))])), 'Failed');
    assert.equal(
      podPhase(
        facts('Always', [cs('a', { waiting: { reason: 'CrashLoopBackOff' } }, { lastState: done(1) })]),
      ),
      'Running',
    );
    assert.equal(podPhase(facts('Never', [cs('a', done(0)), cs('b', done(0))])), 'Succeeded');
    assert.equal(podPhase(facts('Never', [cs('a', done(0)), cs('b', done(2))])), 'Failed');
    assert.equal(podPhase(facts('OnFailure', [cs('a', done(2))])), 'Running');
    assert.equal(podPhase(facts('Always', [cs('a', done(0))], [], true)), 'Succeeded');
    assert.equal(podPhase(facts('Always', [cs('a', done(143))], [], true)), 'Failed');
  });

  it('gives the conditions the kubelet reasons', () => {
    const f = facts(
      'Always',
      [cs('a', { running: {} }, { ready: true }), cs('b', { running: {} })],
      [cs('i', done(0))],
    );
    const c = podConditions(f, 'Running');
    assert.deepEqual(c, [
      { type: 'PodReadyToStartContainers', status: 'True' },
      { type: 'Initialized', status: 'True' },
      {
        type: 'ContainersReady',
        status: 'False',
        reason: 'ContainersNotReady',
        message: 'containers with unready status: [b]',
      },
      {
        type: 'Ready',
        status: 'False',
        reason: 'ContainersNotReady',
        message: 'containers with unready status: [b]',
      },
    ]);
    const init = podConditions(
      facts('Always', [cs('a', { waiting: {} })], [cs('i', { running: {} })]),
      'Pending',
    );
    assert.deepEqual(init[1], {
      type: 'Initialized',
      status: 'False',
      reason: 'ContainersNotInitialized',
      message: 'containers with incomplete status: [i]',
    });
    assert.equal(podConditions(facts('Never', [cs('a', done(0))]), 'Succeeded')[3]!.reason, 'PodCompleted');
  });

  it('classifies QoS', () => {
    const pod = (resources: object) => ({ spec: { containers: [{ name: 'a', resources }] } }) as never;
    assert.equal(qosClass(pod({})), 'BestEffort');
    assert.equal(qosClass(pod({ limits: { cpu: '1', memory: '1Gi' } })), 'Guaranteed');
    assert.equal(qosClass(pod({ requests: { cpu: '1' } })), 'Burstable');
  });
});
