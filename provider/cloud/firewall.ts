import type { protos } from '@google-cloud/compute';
import { NO_LIBRARY_RETRY, type ComputeApi } from './compute-api.ts';
import { InvalidRequestError } from './errors.ts';
import { classifyApiError, classifyOperation } from './gce-errors.ts';

type Firewall = protos.google.cloud.compute.v1.IFirewall;

export interface AgentFirewallSpec {
  project: string;
  name: string;
  /** Network URL or `projects/P/global/networks/N`. */
  network: string;
  /** The cells' network tag: the rule applies to cells only. */
  targetTag: string;
  agentPort: number;
  /** Where the provider's requests come from (its pod range); nothing else may connect. */
  sourceRanges: string[];
}

/** The rule: ingress TCP to the agent port on cells, from the provider's ranges only. */
export function agentFirewallRule(s: AgentFirewallSpec): Firewall {
  return {
    name: s.name,
    network: s.network,
    direction: 'INGRESS',
    priority: 1000,
    description: "Kip: lets the provider reach the cell agent's port; nothing else is opened",
    allowed: [{ IPProtocol: 'tcp', ports: [String(s.agentPort)] }],
    sourceRanges: s.sourceRanges,
    targetTags: [s.targetTag],
  };
}

function sameRule(a: Firewall, b: Firewall): boolean {
  const norm = (f: Firewall) =>
    JSON.stringify({
      allowed: (f.allowed ?? []).map((x) => ({ p: x.IPProtocol, ports: [...(x.ports ?? [])].sort() })),
      denied: f.denied ?? [],
      src: [...(f.sourceRanges ?? [])].sort(),
      tags: [...(f.targetTags ?? [])].sort(),
      dir: f.direction ?? 'INGRESS',
      disabled: Boolean(f.disabled),
    });
  return norm(a) === norm(b);
}

/**
 * Creates the agent firewall rule, or patches it back when someone widened or changed it.
 * Returns what it did.
 */
export async function ensureAgentFirewall(
  api: ComputeApi,
  spec: AgentFirewallSpec,
): Promise<'created' | 'patched' | 'unchanged'> {
  const want = agentFirewallRule(spec);
  const fw = api.clients.firewalls;
  let current: Firewall | undefined;
  try {
    [current] = await api.call('read', 'firewalls.get', () =>
      fw.get({ project: spec.project, firewall: spec.name }, NO_LIBRARY_RETRY),
    );
  } catch (e) {
    if (classifyApiError(e).kind !== 'notFound') throw e;
  }
  if (current && sameRule(current, want)) return 'unchanged';
  const [lro] = current
    ? await api.call('write', 'firewalls.patch', () =>
        fw.patch(
          { project: spec.project, firewall: spec.name, firewallResource: { ...want, disabled: false } },
          NO_LIBRARY_RETRY,
        ),
      )
    : await api.call('write', 'firewalls.insert', () =>
        fw.insert({ project: spec.project, firewallResource: want }, NO_LIBRARY_RETRY),
      );
  const done = await api.waitGlobalOperation(
    spec.project,
    lro.latestResponse as protos.google.cloud.compute.v1.IOperation,
  );
  const failure = classifyOperation(done);
  if (failure && !(failure.kind === 'alreadyExists' && !current)) {
    if (failure.kind === 'invalid')
      throw new InvalidRequestError(`firewall ${spec.name}: ${failure.message}`, 'firewall');
    throw new Error(`firewall ${spec.name}: ${failure.message}`);
  }
  return current ? 'patched' : 'created';
}
