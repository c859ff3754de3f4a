import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type JSONSchemaType } from 'ajv';
import { parse as parseYaml } from 'yaml';

/** A configuration problem, with the offending field named so the operator can fix it. */
export class ConfigError extends Error {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

const ajv = new Ajv({ allErrors: false, useDefaults: true, strict: false });

/** Turns an ajv instance path (`/cloud/zones/0`) into the dotted field an operator writes (`cloud.zones[0]`). */
function fieldName(err: ErrorObject): string {
  const parts = err.instancePath.split('/').slice(1);
  if (err.keyword === 'required') parts.push(String(err.params.missingProperty));
  if (err.keyword === 'additionalProperties') parts.push(String(err.params.additionalProperty));
  return (
    parts.reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), '') || '(root)'
  );
}

/**
 * Validates `value` against a JSON schema, filling in the schema's defaults. Throws ConfigError
 * naming the first bad field.
 */
export function validateConfig<T>(value: unknown, schema: JSONSchemaType<T> | object, source = 'config'): T {
  const validate = ajv.compile<T>(schema);
  if (validate(value)) return value;
  const err = validate.errors![0]!;
  const field = fieldName(err);
  const detail =
    err.keyword === 'additionalProperties' ? 'is not a known field' : (err.message ?? 'is invalid');
  throw new ConfigError(`${source}: field "${field}" ${detail}`, field);
}

/** Reads a YAML (or JSON) config file and validates it; every failure is a one-line ConfigError. */
export function loadConfigFile<T>(path: string, schema: JSONSchemaType<T> | object): T {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`config ${path}: cannot read: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (e) {
    throw new ConfigError(`config ${path}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  return validateConfig<T>(doc, schema, `config ${path}`);
}
