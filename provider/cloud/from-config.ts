import type { Logger } from '../../lib/log.ts';
import type { ProviderConfig } from '../config.ts';
import { GceCloudProvider, type GceCloudProviderOptions } from './gce-cloud-provider.ts';

/**
 * The GCE cloud provider as the provider's config file describes it (`cloud.*` and `cells.*`,
 * see docs/provider-config.md). `extra` overrides or adds options the file does not carry.
 */
export function gceCloudProviderFromConfig(
  cfg: ProviderConfig,
  clusterId: string,
  extra: Partial<GceCloudProviderOptions> & { log?: Logger } = {},
): GceCloudProvider {
  const c = cfg.cloud;
  const opts: GceCloudProviderOptions = {
    project: c.project,
    zones: c.zones,
    network: c.network,
    clusterId,
    privateIpOnly: c.privateIpOnly,
    networkTags: c.networkTags,
    readRequestsPerMinute: c.readRequestsPerMinute,
    writeRequestsPerMinute: c.writeRequestsPerMinute,
    image: { project: cfg.cells.imageProject, family: cfg.cells.imageFamily },
    diskSizeGb: cfg.cells.diskSizeGb,
    agentPort: cfg.cells.agentPort,
    selector: { defaultMachineType: cfg.cells.defaultMachineType },
    ...extra,
  };
  if (c.subnetwork) opts.subnetwork = c.subnetwork;
  if (c.cellServiceAccount) opts.serviceAccount = c.cellServiceAccount;
  if (c.endpoint)
    opts.endpoint = { host: c.endpoint.host, port: c.endpoint.port, protocol: c.endpoint.protocol };
  return new GceCloudProvider(opts);
}
