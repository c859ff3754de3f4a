/**
 * The rules the Marketplace deployer (config_helper.py, expand_config.py, validate_app_resource.py)
 * enforces on a schema v2, plus Kip's own stricter ones (no wildcard RBAC anywhere). Returns one
 * message per broken rule; an empty list means the schema would be accepted.
 */

type Obj = Record<string, unknown>;

const STRING_X_TYPES = new Set([
  'NAME',
  'NAMESPACE',
  'DEPLOYER_IMAGE',
  'GENERATED_PASSWORD',
  'REPORTING_SECRET',
  'SERVICE_ACCOUNT',
  'STORAGE_CLASS',
  'STRING',
  'APPLICATION_UID',
  'TLS_CERTIFICATE',
  'MASKED_FIELD',
]);
const X_TYPES = new Set([...STRING_X_TYPES, 'ISTIO_ENABLED', 'INGRESS_AVAILABLE']);
/**
 * Types mpdev fills in itself when no value is given, so `required` needs no default for them:
 * all but the two the user types in.
 */
const PROVISIONED_X_TYPES = new Set([...X_TYPES].filter((t) => t !== 'STRING' && t !== 'MASKED_FIELD'));
const IMAGE_PROP_TYPES = new Set(['FULL', 'REPO_WITH_REGISTRY', 'REPO_WITHOUT_REGISTRY', 'REGISTRY', 'TAG']);
const PROP_TYPES = new Set(['string', 'integer', 'int', 'number', 'boolean']);
const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;
const HELP_TAGS = new Set(['a', 'h2', 'h3', 'p', 'b', 'i', 'u', 'em']);

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function xType(prop: unknown): string | undefined {
  return isObj(prop) && isObj(prop['x-google-marketplace'])
    ? (prop['x-google-marketplace'].type as string | undefined)
    : undefined;
}

function typeMatches(type: string, v: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof v === 'string';
    case 'integer':
    case 'int':
      return Number.isInteger(v);
    case 'number':
      return typeof v === 'number';
    case 'boolean':
      return typeof v === 'boolean';
  }
  return false;
}

/** Checks a SERVICE_ACCOUNT (or deployerServiceAccount) block. */
function checkServiceAccount(where: string, sa: unknown, out: string[]): void {
  if (!isObj(sa)) {
    out.push(`${where}: serviceAccount must be a map`);
    return;
  }
  if (typeof sa.description !== 'string' || !sa.description.trim())
    out.push(`${where}: a service account needs a description (shown in the UI)`);
  const roles = sa.roles ?? [];
  if (!Array.isArray(roles)) {
    out.push(`${where}: roles must be a list`);
    return;
  }
  roles.forEach((role: unknown, i) => {
    const r = `${where}.roles[${i}]`;
    if (!isObj(role)) return void out.push(`${r}: must be a map`);
    if (role.type !== 'Role' && role.type !== 'ClusterRole')
      out.push(`${r}: type must be Role or ClusterRole`);
    if (role.rulesType === 'PREDEFINED') {
      if (typeof role.rulesFromRoleName !== 'string') out.push(`${r}: PREDEFINED needs rulesFromRoleName`);
      if (role.rules !== undefined) out.push(`${r}: PREDEFINED takes no rules`);
      if (role.type === 'ClusterRole' && role.rulesFromRoleName !== 'view')
        out.push(`${r}: the only predefined ClusterRole allowed is view`);
    } else if (role.rulesType === 'CUSTOM') {
      if (role.rulesFromRoleName !== undefined) out.push(`${r}: CUSTOM takes no rulesFromRoleName`);
      if (!Array.isArray(role.rules) || role.rules.length === 0) out.push(`${r}: CUSTOM needs rules`);
      ((role.rules as unknown[]) ?? []).forEach((rule, j) => {
        const rr = `${r}.rules[${j}]`;
        if (!isObj(rule)) return void out.push(`${rr}: must be a map`);
        if (rule.nonResourceURLs !== undefined) out.push(`${rr}: nonResourceURLs are not allowed`);
        for (const f of ['apiGroups', 'resources', 'verbs']) {
          const list = rule[f];
          if (!Array.isArray(list) || list.length === 0) out.push(`${rr}: ${f} must be a non-empty list`);
          else if (list.some((x) => x === '*' || (typeof x === 'string' && x.includes('*'))))
            out.push(`${rr}: ${f} has a wildcard; name exactly what is needed`);
        }
      });
    } else out.push(`${r}: rulesType must be PREDEFINED or CUSTOM`);
  });
}

function checkHelp(desc: string, out: string[]): void {
  for (const m of desc.matchAll(/<\/?([a-zA-Z0-9]+)/g))
    if (!HELP_TAGS.has(m[1]!.toLowerCase())) out.push(`form: <${m[1]}> is not allowed in the help widget`);
}

/** Merges a test overlay's properties over the schema (the deployer's test mode). */
function applyOverlay(schema: Obj, overlay: Obj, out: string[] = []): Obj {
  const props = { ...(schema.properties as Obj) };
  for (const [k, v] of Object.entries((overlay.properties as Obj) ?? {})) {
    const old = props[k];
    if (old && xType(v) !== undefined && xType(v) !== xType(old))
      out.push(`overlay: property ${k}: x-google-marketplace.type cannot change`);
    props[k] = old && isObj(old) && isObj(v) ? { ...old, ...v } : v;
  }
  return { ...schema, properties: props };
}

/** All rule violations of a schema v2 (optionally with its test overlay). */
export function checkMarketplaceSchema(schema: unknown, overlay?: unknown): string[] {
  const out: string[] = [];
  if (!isObj(schema)) return ['schema: must be a map'];
  const mk = schema['x-google-marketplace'];
  if (!isObj(mk)) return ['x-google-marketplace: is required'];
  if (mk.schemaVersion !== 'v2') out.push('x-google-marketplace.schemaVersion: must be v2');
  if (typeof mk.applicationApiVersion !== 'string')
    out.push('x-google-marketplace.applicationApiVersion: is required in v2');
  if (typeof mk.publishedVersion !== 'string' || !SEMVER.test(mk.publishedVersion))
    out.push('x-google-marketplace.publishedVersion: must be semver including the patch version');
  const meta = mk.publishedVersionMetadata;
  if (!isObj(meta) || typeof meta.releaseNote !== 'string' || !meta.releaseNote.trim())
    out.push('x-google-marketplace.publishedVersionMetadata.releaseNote: is required');
  else if (
    meta.releaseTypes !== undefined &&
    (!Array.isArray(meta.releaseTypes) ||
      meta.releaseTypes.some((t) => !['Feature', 'BugFix', 'Security'].includes(t as string)))
  )
    out.push('x-google-marketplace.publishedVersionMetadata.releaseTypes: only Feature, BugFix, Security');
  if ((mk.partnerId === undefined) !== (mk.solutionId === undefined))
    out.push('x-google-marketplace: partnerId and solutionId go together');

  const images = mk.images;
  const imageProps = new Set<string>();
  if (!isObj(images)) out.push('x-google-marketplace.images: is required in v2');
  else
    for (const [name, img] of Object.entries(images)) {
      if (name !== '' && !/^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/.test(name))
        out.push(`images.${name}: not a valid image name`);
      const props = isObj(img) ? img.properties : undefined;
      if (!isObj(props)) {
        out.push(`images.${name || "''"}: properties are required`);
        continue;
      }
      for (const [p, v] of Object.entries(props)) {
        imageProps.add(p);
        if (!isObj(v) || !IMAGE_PROP_TYPES.has(v.type as string))
          out.push(
            `images.${name || "''"}.properties.${p}: type must be one of ${[...IMAGE_PROP_TYPES].join(', ')}`,
          );
      }
    }

  const cc = mk.clusterConstraints;
  if (isObj(cc)) {
    const scopes = isObj(cc.gcp) && isObj(cc.gcp.nodes) ? cc.gcp.nodes.requiredOauthScopes : undefined;
    if (Array.isArray(scopes))
      for (const s of scopes)
        if (typeof s !== 'string' || !s.startsWith('https://www.googleapis.com/auth/'))
          out.push(
            `clusterConstraints.gcp.nodes.requiredOauthScopes: "${String(s)}" must be fully qualified`,
          );
    if (Array.isArray(cc.resources))
      cc.resources.forEach((r: unknown, i) => {
        const req = isObj(r) ? r.requests : undefined;
        if (!isObj(req) || !(req.cpu || req.memory || req.gpu))
          out.push(`clusterConstraints.resources[${i}]: requests need cpu, memory or gpu`);
      });
  }
  if (mk.deployerServiceAccount !== undefined)
    checkServiceAccount('deployerServiceAccount', mk.deployerServiceAccount, out);

  const full = overlay === undefined ? schema : applyOverlay(schema, overlay as Obj, out);
  const props = full.properties;
  if (!isObj(props)) return out.concat('properties: is required');
  for (const [name, prop] of Object.entries(props)) {
    const where = `properties.${name}`;
    if (!/^[a-zA-Z0-9_.-]+$/.test(name)) out.push(`${where}: name has characters the deployer refuses`);
    if (!isObj(prop)) {
      out.push(`${where}: must be a map`);
      continue;
    }
    const type = prop.type as string;
    if (!PROP_TYPES.has(type)) out.push(`${where}: type must be string, integer, number or boolean`);
    if (prop.default !== undefined && PROP_TYPES.has(type) && !typeMatches(type, prop.default))
      out.push(`${where}: default is not a ${type}`);
    if (
      prop.enum !== undefined &&
      (!Array.isArray(prop.enum) || prop.enum.some((v) => !typeMatches(type, v)))
    )
      out.push(`${where}: enum values must be ${type}s`);
    if (prop.pattern !== undefined) {
      try {
        const re = new RegExp(prop.pattern as string);
        if (typeof prop.default === 'string' && !re.test(prop.default))
          out.push(`${where}: default "${prop.default}" does not match its pattern`);
      } catch {
        out.push(`${where}: pattern is not a regular expression`);
      }
    }
    for (const k of ['minimum', 'maximum'])
      if (prop[k] !== undefined && typeof prop[k] !== 'number') out.push(`${where}: ${k} must be a number`);
    if (typeof prop.default === 'number') {
      if (typeof prop.minimum === 'number' && prop.default < prop.minimum)
        out.push(`${where}: default below minimum`);
      if (typeof prop.maximum === 'number' && prop.default > prop.maximum)
        out.push(`${where}: default above maximum`);
    }
    if (imageProps.has(name)) out.push(`${where}: also declared as an image property`);
    const xm = prop['x-google-marketplace'];
    if (xm === undefined) continue;
    const xt = xType(prop);
    if (!isObj(xm) || !xt) {
      out.push(`${where}: x-google-marketplace needs a type`);
      continue;
    }
    if (xt === 'IMAGE') {
      out.push(`${where}: images must be declared in the top level x-google-marketplace.images`);
      continue;
    }
    if (!X_TYPES.has(xt)) out.push(`${where}: unknown x-google-marketplace type ${xt}`);
    if (STRING_X_TYPES.has(xt) && type !== 'string') out.push(`${where}: ${xt} must be a string`);
    if ((xt === 'ISTIO_ENABLED' || xt === 'INGRESS_AVAILABLE') && type !== 'boolean')
      out.push(`${where}: ${xt} must be a boolean`);
    if (xt === 'SERVICE_ACCOUNT') checkServiceAccount(where, xm.serviceAccount, out);
    if (xt === 'STORAGE_CLASS' && (!isObj(xm.storageClass) || xm.storageClass.type !== 'SSD'))
      out.push(`${where}: storageClass.type is required (SSD)`);
  }
  const required = full.required ?? [];
  if (!Array.isArray(required)) out.push('required: must be a list');
  else
    for (const r of required) {
      if (!isObj(props[r as string])) {
        out.push(`required: ${String(r)} is not a property`);
        continue;
      }
      // mpdev verify passes only name and namespace: everything else needs a default or is provisioned.
      if (overlay !== undefined) {
        const p = props[r as string] as Obj;
        if (p.default === undefined && !PROVISIONED_X_TYPES.has(xType(p) ?? ''))
          out.push(`required: ${String(r)} has no default in the test overlay (verification would fail)`);
      }
    }
  const form = schema.form;
  if (form !== undefined) {
    if (!Array.isArray(form) || form.length > 1) out.push('form: at most one item');
    else
      for (const f of form) {
        if (!isObj(f) || f.widget !== 'help') out.push('form: only the help widget is supported');
        else if (typeof f.description !== 'string') out.push('form: help needs a description');
        else checkHelp(f.description, out);
      }
  }
  return out;
}
