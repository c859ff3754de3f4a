/**
 * Kubernetes resource quantities (`500m`, `1.5`, `2Gi`, `512Mi`, `1G`, `1e3`). The parser exported
 * by @kubernetes/client-node is not part of its public entry point and cannot read fractional
 * binary quantities such as `1.5Gi`, so Kip has its own.
 */

/** A string that is not a Kubernetes quantity; the message quotes it and shows valid forms. */
export class QuantityError extends Error {
  constructor(readonly input: string) {
    super(`"${input}" is not a Kubernetes quantity (examples: 500m, 1.5, 2Gi, 512Mi, 1G)`);
    this.name = 'QuantityError';
  }
}

const MULTIPLIERS: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

const QUANTITY = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$/;

/** Parses a quantity to a plain number in base units (cores, bytes, GPUs). Throws QuantityError. */
export function parseQuantity(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input)) throw new QuantityError(String(input));
    return input;
  }
  const text = input.trim();
  const m = QUANTITY.exec(text);
  if (!m) throw new QuantityError(input);
  const base = Number(m[1]);
  const value = m[2] ? base * 10 ** Number(m[2].slice(1)) : base * MULTIPLIERS[m[3] ?? '']!;
  if (!Number.isFinite(value)) throw new QuantityError(input);
  return value;
}

/** A non-negative quantity, for resource requests; a negative one throws QuantityError. */
export function parseNonNegativeQuantity(input: string | number): number {
  const v = parseQuantity(input);
  if (v < 0) throw new QuantityError(String(input));
  return v;
}

/** CPU in millicores, rounded up as the kubelet does (`1.5` → 1500, `100m` → 100, `0.0001` → 1). */
export function cpuMillis(input: string | number): number {
  return Math.ceil(Math.round(parseNonNegativeQuantity(input) * 1e6) / 1e3);
}

/** Memory in bytes, rounded up to a whole byte. */
export function memoryBytes(input: string | number): number {
  return Math.ceil(parseNonNegativeQuantity(input));
}
