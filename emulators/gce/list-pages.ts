import { invalidField } from './errors.ts';
import { compileFilter, FilterError } from './list-filter.ts';

/** The list query parameters Compute Engine takes. */
export interface ListQuery {
  filter?: string;
  maxResults?: string;
  pageToken?: string;
  orderBy?: string;
}

type Named = { name: string; creationTimestamp?: string };

function order(query: ListQuery): (a: Named, b: Named) => number {
  const spec = (query.orderBy ?? '').trim();
  if (!spec || spec === 'name') return (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  if (spec === 'name desc') return (a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0);
  const m = /^creationTimestamp( desc)?$/.exec(spec);
  if (m) {
    const dir = m[1] ? -1 : 1;
    return (a, b) =>
      dir * (a.creationTimestamp ?? '').localeCompare(b.creationTimestamp ?? '') ||
      (a.name < b.name ? -1 : 1);
  }
  throw invalidField(
    'orderBy',
    spec,
    "Sorting is supported only by 'name' and 'creationTimestamp' (optionally 'desc').",
  );
}

function pageSize(query: ListQuery): number {
  if (query.maxResults === undefined || query.maxResults === '') return 500;
  const n = Number(query.maxResults);
  if (!Number.isInteger(n) || n < 0 || n > 500) {
    throw invalidField('maxResults', query.maxResults, 'Must be an integer between 0 and 500.');
  }
  return n === 0 ? 500 : n;
}

function filterOf(query: ListQuery): (r: unknown) => boolean {
  try {
    return compileFilter(query.filter);
  } catch (e) {
    if (e instanceof FilterError)
      throw invalidField('filter', query.filter, `Invalid list filter expression: ${e.message}.`);
    throw e;
  }
}

function startIndex(query: ListQuery, total: number): number {
  if (!query.pageToken) return 0;
  const n = Number(Buffer.from(query.pageToken, 'base64url').toString());
  if (!Number.isInteger(n) || n < 0 || n > total)
    throw invalidField('pageToken', query.pageToken, 'The page token is not valid.');
  return n;
}

/** One page of a zonal or global list: `{kind, id, items, nextPageToken, selfLink}`. */
export function listPage<T extends Named>(
  all: T[],
  query: ListQuery,
  kind: string,
  selfLink: string,
): Record<string, unknown> {
  const matches = all.filter(filterOf(query)).sort(order(query));
  const size = pageSize(query);
  const start = startIndex(query, matches.length);
  const items = matches.slice(start, start + size);
  const body: Record<string, unknown> = { kind, id: selfLink.replace(/^.*\/compute\/v1\//, ''), selfLink };
  if (items.length > 0) body.items = items;
  if (start + size < matches.length)
    body.nextPageToken = Buffer.from(String(start + size)).toString('base64url');
  return body;
}

/**
 * One page of an aggregatedList: `items` keyed by scope (`zones/us-central1-a`), scopes without
 * results on the page carrying GCE's NO_RESULTS_ON_PAGE warning.
 */
export function aggregatedPage<T extends Named>(
  byScope: Map<string, T[]>,
  field: string,
  query: ListQuery,
  kind: string,
  selfLink: string,
): Record<string, unknown> {
  const match = filterOf(query);
  const cmp = order(query);
  const flat: [string, T][] = [];
  for (const scope of [...byScope.keys()].sort()) {
    for (const item of byScope.get(scope)!.filter(match).sort(cmp)) flat.push([scope, item]);
  }
  const size = pageSize(query);
  const start = startIndex(query, flat.length);
  const page = flat.slice(start, start + size);
  const items: Record<string, unknown> = {};
  for (const scope of [...byScope.keys()].sort()) {
    const here = page.filter(([s]) => s === scope).map(([, i]) => i);
    items[scope] =
      here.length > 0
        ? { [field]: here }
        : {
            warning: {
              code: 'NO_RESULTS_ON_PAGE',
              message: `There are no results for scope '${scope}' on this page.`,
              data: [{ key: 'scope', value: scope }],
            },
          };
  }
  const body: Record<string, unknown> = {
    kind,
    id: selfLink.replace(/^.*\/compute\/v1\//, ''),
    items,
    selfLink,
  };
  if (start + size < flat.length)
    body.nextPageToken = Buffer.from(String(start + size)).toString('base64url');
  return body;
}
