/** Label and field selectors in the query-string syntax kubectl and client libraries send. */
import { badRequest } from './api-errors.ts';
import type { KObject } from './object.ts';
import type { FieldGetter } from './resources.ts';

type Op = 'exists' | '!exists' | '=' | '!=' | 'in' | 'notin' | 'gt' | 'lt';

interface Requirement {
  key: string;
  op: Op;
  values: string[];
}

export type Matcher = (obj: KObject) => boolean;

const matchAll: Matcher = () => true;

/** Splits on commas outside parentheses (`a in (x,y),b` → two requirements). */
function splitTerms(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((t) => t.trim()).filter((t) => t !== '');
}

const KEY = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$/;
const VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function parseRequirement(term: string): Requirement {
  let m: RegExpMatchArray | null;
  const fail = (why: string) => badRequest(`unable to parse requirement: ${why}: "${term}"`);
  const checkKey = (k: string) => {
    if (!KEY.test(k) || k.length > 317) throw fail(`invalid label key "${k}"`);
    return k;
  };
  const checkValue = (v: string) => {
    if (!VALUE.test(v) || v.length > 63) throw fail(`invalid label value "${v}"`);
    return v;
  };
  if ((m = term.match(/^!\s*(\S+)$/))) return { key: checkKey(m[1]!), op: '!exists', values: [] };
  if ((m = term.match(/^(\S+)\s+(in|notin)\s*\((.*)\)$/))) {
    const values = m[3]!.split(',').map((v) => checkValue(v.trim()));
    return { key: checkKey(m[1]!), op: m[2] as Op, values };
  }
  if ((m = term.match(/^([^!=<>\s]+)\s*(==|=|!=|>|<)\s*(\S*)$/))) {
    const op: Op = m[2] === '!=' ? '!=' : m[2] === '>' ? 'gt' : m[2] === '<' ? 'lt' : '=';
    if ((op === 'gt' || op === 'lt') && !/^-?\d+$/.test(m[3]!))
      throw fail('for > and < the value must be an integer');
    return { key: checkKey(m[1]!), op, values: [op === 'gt' || op === 'lt' ? m[3]! : checkValue(m[3]!)] };
  }
  if ((m = term.match(/^(\S+)$/))) return { key: checkKey(m[1]!), op: 'exists', values: [] };
  throw fail('found unexpected text');
}

function matchLabels(reqs: Requirement[], labels: Record<string, string>): boolean {
  for (const r of reqs) {
    const has = Object.prototype.hasOwnProperty.call(labels, r.key);
    const v = labels[r.key];
    switch (r.op) {
      case 'exists':
        if (!has) return false;
        break;
      case '!exists':
        if (has) return false;
        break;
      case '=':
        if (!has || v !== r.values[0]) return false;
        break;
      case '!=':
        if (has && v === r.values[0]) return false;
        break;
      case 'in':
        if (!has || !r.values.includes(v!)) return false;
        break;
      case 'notin':
        if (has && r.values.includes(v!)) return false;
        break;
      case 'gt':
      case 'lt': {
        if (!has || !/^-?\d+$/.test(v!)) return false;
        const n = Number(v);
        const want = Number(r.values[0]);
        if (r.op === 'gt' ? !(n > want) : !(n < want)) return false;
      }
    }
  }
  return true;
}

/** Parses `app=web,tier!=db,env in (a,b),!legacy`; throws a 400 ApiError on bad syntax. */
export function parseLabelSelector(selector: string | undefined | null): Matcher {
  if (!selector || selector.trim() === '') return matchAll;
  const reqs = splitTerms(selector).map(parseRequirement);
  return (obj) => matchLabels(reqs, obj.metadata.labels ?? {});
}

/** Matches a plain label map against a `matchLabels`/`matchExpressions` LabelSelector object. */
export function labelSelectorObjectMatches(
  sel: {
    matchLabels?: Record<string, string>;
    matchExpressions?: { key: string; operator: string; values?: string[] }[];
  },
  labels: Record<string, string>,
): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    const vals = e.values ?? [];
    if (e.operator === 'In' && (!has || !vals.includes(labels[e.key]!))) return false;
    if (e.operator === 'NotIn' && has && vals.includes(labels[e.key]!)) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
    if ((e.operator === 'Gt' || e.operator === 'Lt') && (!has || Number.isNaN(Number(labels[e.key]))))
      return false;
    if (e.operator === 'Gt' && !(Number(labels[e.key]) > Number(vals[0]))) return false;
    if (e.operator === 'Lt' && !(Number(labels[e.key]) < Number(vals[0]))) return false;
  }
  return true;
}

/**
 * Parses `spec.nodeName=a,status.phase!=Failed`. Only metadata.name, metadata.namespace and the
 * fields the resource table lists are selectable, as on the real server.
 */
export function parseFieldSelector(
  selector: string | undefined | null,
  fields: Record<string, FieldGetter>,
): Matcher {
  if (!selector || selector.trim() === '') return matchAll;
  const terms = selector
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  const tests: Matcher[] = terms.map((term) => {
    const m = term.match(/^([^!=]+?)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw badRequest(`invalid selector: '${selector}'; can't understand '${term}'`);
    const key = m[1]!;
    const want = m[3]!;
    const negate = m[2] === '!=';
    let get: FieldGetter | undefined = fields[key];
    if (key === 'metadata.name') get = (o) => o.metadata.name;
    else if (key === 'metadata.namespace') get = (o) => o.metadata.namespace;
    if (!get) throw badRequest(`field label not supported: ${key}`);
    const getter = get;
    return (obj) => {
      const v = getter(obj);
      const s = v === undefined || v === null ? '' : String(v);
      return negate ? s !== want : s === want;
    };
  });
  return (obj) => tests.every((t) => t(obj));
}
