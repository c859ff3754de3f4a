import { invalidField } from './errors.ts';

const KEY = /^[a-z][a-z0-9_-]{0,62}$/;
const VALUE = /^[a-z0-9_-]{0,63}$/;

/** Validates GCE labels (lowercase keys and values, at most 64 pairs); the error names the field. */
export function validateLabels(labels: unknown, field: string): Record<string, string> {
  if (labels === undefined || labels === null) return {};
  if (typeof labels !== 'object' || Array.isArray(labels))
    throw invalidField(field, JSON.stringify(labels), 'Labels must be a map of strings.');
  const out: Record<string, string> = {};
  const entries = Object.entries(labels as Record<string, unknown>);
  if (entries.length > 64)
    throw invalidField(field, `${entries.length} labels`, 'A resource can have at most 64 labels.');
  for (const [k, v] of entries) {
    const value = v === null || v === undefined ? '' : String(v);
    if (!KEY.test(k)) {
      throw invalidField(
        `${field}.${k}`,
        k,
        'Label keys must start with a lowercase letter, contain only lowercase letters, digits, underscores and dashes, and be at most 63 characters long.',
      );
    }
    if (!VALUE.test(value)) {
      throw invalidField(
        `${field}.${k}`,
        value,
        'Label values can contain only lowercase letters, digits, underscores and dashes, and be at most 63 characters long.',
      );
    }
    out[k] = value;
  }
  return out;
}

const META_KEY = /^[a-zA-Z0-9_-]{1,128}$/;

/** Validates metadata items (keys, 256 KB per value, 512 KB in all) as GCE does. */
export function validateMetadataItems(items: unknown, field: string): { key: string; value: string }[] {
  if (items === undefined || items === null) return [];
  if (!Array.isArray(items))
    throw invalidField(field, JSON.stringify(items), 'Metadata items must be a list of {key, value}.');
  let total = 0;
  const seen = new Set<string>();
  return items.map((raw: unknown, i) => {
    const item = (raw ?? {}) as { key?: unknown; value?: unknown };
    const key = String(item.key ?? '');
    if (!META_KEY.test(key))
      throw invalidField(
        `${field}[${i}].key`,
        key,
        'Metadata keys must be 1-128 letters, digits, dashes or underscores.',
      );
    if (seen.has(key)) throw invalidField(`${field}[${i}].key`, key, 'Metadata keys must be unique.');
    seen.add(key);
    const value = item.value === undefined || item.value === null ? '' : String(item.value);
    const size = Buffer.byteLength(value) + Buffer.byteLength(key);
    if (Buffer.byteLength(value) > 256 * 1024)
      throw invalidField(`${field}[${i}].value`, `${size} bytes`, 'A metadata value can be at most 256 KB.');
    total += size;
    if (total > 512 * 1024)
      throw invalidField(field, `${total} bytes`, 'Metadata can be at most 512 KB in all.');
    return { key, value };
  });
}
