import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import { InvalidRequestError } from './errors.ts';
import { cellRequestFromPod, effectiveRequest } from './pod-resources.ts';

const c = (requests?: Record<string, string>, limits?: Record<string, string>, extra: object = {}) => ({
  name: 'c',
  image: 'busybox',
  resources: { requests, limits },
  ...extra,
});

describe("a pod's effective request (the kubelet's rule)", () => {
  it('sums app containers and takes limits where requests are absent', () => {
    const pod: V1Pod = {
      spec: { containers: [c({ cpu: '250m', memory: '256Mi' }), c(undefined, { cpu: '1', memory: '1Gi' })] },
    };
    assert.deepEqual(effectiveRequest(pod), { cpuMillis: 1250, memoryBytes: 1280 * 2 ** 20, gpus: 0 });
  });

  it('takes the largest init container when it exceeds the app sum', () => {
    const pod: V1Pod = {
      spec: {
        initContainers: [c({ cpu: '2', memory: '100Mi' }), c({ cpu: '100m', memory: '3Gi' })],
        containers: [c({ cpu: '500m', memory: '1Gi' })],
      },
    };
    assert.deepEqual(effectiveRequest(pod), { cpuMillis: 2000, memoryBytes: 3 * 2 ** 30, gpus: 0 });
  });

  it('adds sidecar init containers to the app containers and pod overhead to all', () => {
    const pod: V1Pod = {
      spec: {
        initContainers: [c({ cpu: '100m' }, undefined, { restartPolicy: 'Always' }), c({ cpu: '1' })],
        containers: [c({ cpu: '500m' })],
        overhead: { cpu: '50m' },
      },
    };
    assert.equal(effectiveRequest(pod).cpuMillis, 1150);
  });

  it('reads GPUs from limits and the accelerator from the nodeSelector, with annotations', () => {
    const pod: V1Pod = {
      metadata: { annotations: { 'pod.elotl.co/launch-type': 'spot', 'pod.elotl.co/instance-type': 'n1-*' } },
      spec: {
        nodeSelector: { 'cloud.google.com/gke-accelerator': 'nvidia-tesla-t4' },
        containers: [c({ cpu: '1', memory: '4Gi' }, { 'nvidia.com/gpu': '2' })],
      },
    };
    const { request } = cellRequestFromPod(pod);
    assert.deepEqual(request, {
      cpuMillis: 1000,
      memoryBytes: 4 * 2 ** 30,
      gpus: 2,
      spot: true,
      accelerator: 'nvidia-tesla-t4',
      instanceType: 'n1-*',
    });
  });

  it('names the container field holding a bad quantity', () => {
    const pod: V1Pod = { spec: { containers: [c({ cpu: '1' }), c({ memory: 'lots' })] } };
    assert.throws(
      () => effectiveRequest(pod),
      (e: unknown) =>
        e instanceof InvalidRequestError && /spec\.containers\[1\]\.resources memory: "lots"/.test(e.message),
    );
  });
});
