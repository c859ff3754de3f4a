import type { Command } from 'commander';
import { cpuMillis, memoryBytes, QuantityError } from '../../lib/quantity.ts';
import { annotationPairs, parseAnnotations } from '../cloud/annotations.ts';
import type { ShapeRequest } from '../cloud/cloud-provider.ts';
import { InstanceSelector } from '../cloud/instance-selector.ts';
import { MachineCatalog } from '../cloud/machine-catalog.ts';
import { PriceTable } from '../cloud/pricing.ts';

interface ShapeFlags {
  cpu: string;
  memory: string;
  gpu: string;
  accelerator?: string;
  annotation: string[];
  zones: string;
  prices?: string;
}

function quantity(flag: string, value: string, parse: (v: string) => number): number {
  try {
    return parse(value);
  } catch (e) {
    if (e instanceof QuantityError) throw new Error(`--${flag}: ${e.message}`, { cause: e });
    throw e;
  }
}

/**
 * Answers "what will this pod cost?": the machine type, zone and hourly list price Kip would pick
 * for a pod's effective request, printed as one JSON line.
 */
export function shapeCommand(program: Command): void {
  program
    .command('shape')
    .description("print the machine type, zone and price Kip picks for a pod's request, as one JSON line")
    .option('--cpu <quantity>', 'effective CPU request (500m, 1.5)', '0')
    .option('--memory <quantity>', 'effective memory request (512Mi, 2Gi, 1G)', '0')
    .option('--gpu <n>', 'nvidia.com/gpu limit', '0')
    .option('--accelerator <type>', 'GPU type, as the cloud.google.com/gke-accelerator nodeSelector')
    .option(
      '--annotation <k=v>',
      'a pod annotation (repeatable)',
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .option('--zones <list>', 'comma-separated zones', 'us-central1-a,us-central1-b')
    .option('--prices <file>', 'price table JSON (default: the us-central1 table shipped with Kip)')
    .action((flags: ShapeFlags) => {
      const gpus = flags.gpu.trim();
      if (!/^\d+$/.test(gpus)) throw new Error(`--gpu: "${flags.gpu}" is not a whole number of GPUs`);
      if (flags.accelerator && Number(gpus) === 0) throw new Error('--accelerator needs --gpu 1 or more');
      const ann = parseAnnotations(annotationPairs(flags.annotation));
      const request: ShapeRequest = {
        cpuMillis: quantity('cpu', flags.cpu, cpuMillis),
        memoryBytes: quantity('memory', flags.memory, memoryBytes),
        gpus: Number(gpus),
        spot: ann.spot,
      };
      if (flags.accelerator) request.accelerator = flags.accelerator;
      if (ann.instanceType) request.instanceType = ann.instanceType;
      const zones = flags.zones
        .split(',')
        .map((z) => z.trim())
        .filter(Boolean);
      if (zones.length === 0) throw new Error('--zones: give at least one zone');
      const prices = flags.prices ? PriceTable.load(flags.prices) : PriceTable.load();
      const choice = new InstanceSelector({ catalog: MachineCatalog.builtin(prices, zones) }).choose(request);
      process.stdout.write(
        `${JSON.stringify({
          machineType: choice.machineType,
          zone: choice.zone,
          spot: choice.capacityType === 'spot',
          hourlyPriceUSD: choice.hourlyPriceUSD,
          reason: `${choice.reason}; list prices of ${prices.asOf}`,
        })}\n`,
      );
    });
}
