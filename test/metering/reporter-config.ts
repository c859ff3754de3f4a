import { METRICS } from '../../provider/metering/interval-billing.ts';
import { SERVICE } from '../../usage-reporter/test-harness.ts';

/**
 * The chart's reporter config for the provider's metrics: passthrough int metrics to Service
 * Control at `rootUrl`, or with `bufferSeconds` aggregated ones (a chart value), for which the
 * reporter takes no report ids.
 */
export function providerReporterConfig(rootUrl: string, bufferSeconds = 0): object {
  return {
    identities: [{ name: 'gcp', gcp: { encodedServiceAccountKey: '$AGENT_ENCODED_KEY' } }],
    metrics: Object.values(METRICS).map((name) => ({
      name,
      type: 'int',
      endpoints: [{ name: 'servicecontrol' }],
      ...(bufferSeconds ? { aggregation: { bufferSeconds } } : { passthrough: {} }),
    })),
    endpoints: [
      {
        name: 'servicecontrol',
        servicecontrol: { identity: 'gcp', serviceName: SERVICE, consumerId: '$AGENT_CONSUMER_ID', rootUrl },
      },
    ],
  };
}
