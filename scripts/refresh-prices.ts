/**
 * Refreshes Kip's price table from a Cloud Billing Catalog SKU export.
 *
 *   curl -s -H "Authorization: Bearer $(gcloud auth print-access-token)" \
 *     "https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus?currencyCode=USD&pageSize=5000" > skus.json
 *   npx tsx scripts/refresh-prices.ts --skus skus.json [--region us-central1] [--date 2026-11-21] \
 *     [--out provider/cloud/data/prices-us-central1.json]
 *
 * (Concatenate pages if the export has a nextPageToken: the file may hold `{skus: [...]}` or an
 * array of such pages.) Prints each changed rate, then the rates the export did not cover.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DEFAULT_PRICE_FILE, validatePriceData } from '../provider/cloud/pricing.ts';
import { applySkus, type BillingSku } from '../provider/cloud/sku-prices.ts';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

try {
  const skusFile = arg('skus');
  if (!skusFile) throw new Error('--skus <file> is required (a Cloud Billing Catalog SKU export, JSON)');
  const region = arg('region') ?? 'us-central1';
  const date = arg('date') ?? new Date().toISOString().slice(0, 10);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) throw new Error(`--date must be YYYY-MM-DD; got ${date}`);
  const out = arg('out') ?? fileURLToPath(DEFAULT_PRICE_FILE);
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(skusFile, 'utf8'));
  } catch (e) {
    throw new Error(`${skusFile}: ${(e as Error).message}`, { cause: e });
  }
  const pages = Array.isArray(doc) ? doc : [doc];
  const skus = pages.flatMap((p) => ((p as { skus?: BillingSku[] }).skus ?? []) as BillingSku[]);
  if (skus.length === 0) throw new Error(`${skusFile}: no "skus" array found`);
  let old: unknown;
  try {
    old = JSON.parse(readFileSync(out, 'utf8'));
  } catch {
    old = JSON.parse(readFileSync(DEFAULT_PRICE_FILE, 'utf8'));
  }
  const { data, changes, unmatched } = applySkus(validatePriceData(old), skus, region, date);
  data.source = `Cloud Billing Catalog SKU export ${skusFile}, region ${region}, read ${date}`;
  if (unmatched.length === 0) delete data.provenance;
  else
    data.provenance = {
      catalog: 'rates found in the export',
      estimated: `kept from the previous table: ${unmatched.join(', ')}`,
    };
  validatePriceData(data);
  writeFileSync(out, `${JSON.stringify(data, null, 2)}\n`);
  for (const c of changes) console.log(`${c.field}: ${c.from ?? '-'} -> ${c.to}`);
  console.log(
    `${changes.length} rates changed; ${unmatched.length} not in the export: ${unmatched.join(', ') || 'none'}`,
  );
  console.log(
    JSON.stringify({ out, region, asOf: date, changed: changes.length, unmatched: unmatched.length }),
  );
} catch (e) {
  console.error(`refresh-prices: ${(e as Error).message}`);
  process.exit(1);
}
