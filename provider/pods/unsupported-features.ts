/**
 * What Kip cannot do yet, found before a VM is paid for. Every finding becomes a pod event and a
 * status message naming the field; nothing is dropped or replaced by something else (the Go Kip
 * quietly turned unknown volumes into emptyDirs).
 */
import type { V1Container, V1Pod, V1Probe } from '@kubernetes/client-node';

export interface UnsupportedFeature {
  /** The pod field at fault, e.g. `spec.volumes[1].persistentVolumeClaim`. */
  field: string;
  message: string;
}

/** Volume sources the cell agent builds or the provider resolves. */
const SUPPORTED_VOLUMES = new Set([
  'name',
  'emptyDir',
  'hostPath',
  'configMap',
  'secret',
  'projected',
  'downwardAPI',
]);
const SUPPORTED_PROJECTIONS = new Set(['configMap', 'secret', 'serviceAccountToken', 'downwardAPI']);

function probeFindings(probe: V1Probe | undefined, field: string, out: UnsupportedFeature[]): void {
  if (probe?.grpc) out.push({ field: `${field}.grpc`, message: 'gRPC probes are not supported yet' });
}

function containerFindings(c: V1Container, field: string, out: UnsupportedFeature[]): void {
  // stdin is supported (kubectl attach -i); a terminal is not.
  if (c.tty)
    out.push({
      field: `${field}.tty`,
      message: 'containers with tty (kubectl attach/run -t) are not supported yet',
    });
  probeFindings(c.livenessProbe, `${field}.livenessProbe`, out);
  probeFindings(c.readinessProbe, `${field}.readinessProbe`, out);
  probeFindings(c.startupProbe, `${field}.startupProbe`, out);
}

/** Every feature of `pod` Kip cannot honour, in field order; empty when the pod can run. */
export function unsupportedFeatures(pod: V1Pod): UnsupportedFeature[] {
  const out: UnsupportedFeature[] = [];
  const spec = pod.spec;
  if (!spec) return [{ field: 'spec', message: 'the pod has no spec' }];
  (spec.volumes ?? []).forEach((v, i) => {
    for (const key of Object.keys(v)) {
      if ((v as unknown as Record<string, unknown>)[key] === undefined || SUPPORTED_VOLUMES.has(key))
        continue;
      out.push({
        field: `spec.volumes[${i}].${key}`,
        message: `volume "${v.name}": ${key} volumes are not supported yet (supported: emptyDir, hostPath, configMap, secret, projected, downwardAPI)`,
      });
    }
    (v.projected?.sources ?? []).forEach((s, j) => {
      for (const key of Object.keys(s)) {
        if ((s as unknown as Record<string, unknown>)[key] === undefined || SUPPORTED_PROJECTIONS.has(key))
          continue;
        out.push({
          field: `spec.volumes[${i}].projected.sources[${j}].${key}`,
          message: `volume "${v.name}": projected ${key} sources are not supported yet`,
        });
      }
    });
  });
  if (spec.hostNetwork)
    out.push({
      field: 'spec.hostNetwork',
      message: 'hostNetwork is not supported yet (the cell is the host)',
    });
  if (spec.shareProcessNamespace)
    out.push({ field: 'spec.shareProcessNamespace', message: 'shareProcessNamespace is not supported yet' });
  if (spec.ephemeralContainers?.length)
    out.push({ field: 'spec.ephemeralContainers', message: 'ephemeral containers are not supported yet' });
  spec.containers.forEach((c, i) => containerFindings(c, `spec.containers[${i}]`, out));
  (spec.initContainers ?? []).forEach((c, i) => containerFindings(c, `spec.initContainers[${i}]`, out));
  return out;
}

/** One line for a status message: every finding, field first. */
export function describeUnsupported(found: UnsupportedFeature[]): string {
  return found.map((f) => `${f.field}: ${f.message}`).join('; ');
}
