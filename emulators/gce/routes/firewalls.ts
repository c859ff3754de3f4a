import type { Request } from 'express';
import { idempotent, type ApiRouter } from '../api-router.ts';
import { alreadyExists, invalidField, notFound, required } from '../errors.ts';
import { globalPath, link, NAME_RE, NAME_RULE, newId, timestamp } from '../links.ts';
import { listPage, type ListQuery } from '../list-pages.ts';
import type { EmulatorContext, Resource } from '../state.ts';

type Body = Record<string, unknown>;

const RULE_FIELDS = [
  'description',
  'priority',
  'sourceRanges',
  'destinationRanges',
  'sourceTags',
  'targetTags',
  'sourceServiceAccounts',
  'targetServiceAccounts',
  'allowed',
  'denied',
  'direction',
  'disabled',
  'logConfig',
];

/** Checks a firewall rule's fields the way GCE rejects them; `prefix` names the field in errors. */
function validateRule(rule: Body): void {
  const direction = (rule.direction as string | undefined) ?? 'INGRESS';
  if (!['INGRESS', 'EGRESS'].includes(direction))
    throw invalidField('resource.direction', direction, "Must be one of 'INGRESS', 'EGRESS'.");
  const priority = rule.priority === undefined ? 1000 : Number(rule.priority);
  if (!Number.isInteger(priority) || priority < 0 || priority > 65535)
    throw invalidField('resource.priority', rule.priority, 'Must be an integer between 0 and 65535.');
  const allowed = rule.allowed as Body[] | undefined;
  const denied = rule.denied as Body[] | undefined;
  if (allowed?.length && denied?.length)
    throw invalidField(
      'resource.denied',
      'denied',
      'A firewall rule has either allowed or denied entries, not both.',
    );
  if (!allowed?.length && !denied?.length) throw required('resource.allowed');
  for (const [field, list] of [
    ['allowed', allowed],
    ['denied', denied],
  ] as const) {
    (list ?? []).forEach((a, i) => {
      const proto = String(a.IPProtocol ?? '');
      if (!/^(tcp|udp|icmp|esp|ah|sctp|ipip|all|\d+)$/.test(proto))
        throw invalidField(`resource.${field}[${i}].IPProtocol`, proto, 'Unknown protocol.');
      for (const port of (a.ports as string[] | undefined) ?? []) {
        const m = /^(\d+)(?:-(\d+))?$/.exec(String(port));
        const lo = Number(m?.[1]);
        const hi = Number(m?.[2] ?? m?.[1]);
        if (!m || lo < 0 || hi > 65535 || lo > hi)
          throw invalidField(
            `resource.${field}[${i}].ports`,
            port,
            'Ports must be a number or a range lo-hi within 0-65535.',
          );
        if (!['tcp', 'udp', 'sctp'].includes(proto))
          throw invalidField(
            `resource.${field}[${i}].ports`,
            port,
            'Ports can only be given for tcp, udp and sctp.',
          );
      }
    });
  }
  for (const field of ['sourceRanges', 'destinationRanges']) {
    for (const r of (rule[field] as string[] | undefined) ?? []) {
      if (!/^\d{1,3}(\.\d{1,3}){3}(\/\d{1,2})?$/.test(String(r)))
        throw invalidField(`resource.${field}`, r, 'Must be an IPv4 range in CIDR form.');
    }
  }
}

function render(
  ctx: EmulatorContext,
  name: string,
  body: Body,
  id = newId(),
  created = timestamp(),
): Resource {
  const out: Resource = {
    kind: 'compute#firewall',
    id,
    creationTimestamp: created,
    name,
    network: link(`${globalPath(ctx.project)}/networks/default`),
    priority: 1000,
    direction: 'INGRESS',
    disabled: false,
    selfLink: link(`${globalPath(ctx.project)}/firewalls/${name}`),
  };
  for (const f of RULE_FIELDS) if (body[f] !== undefined && body[f] !== null) out[f] = body[f];
  out.priority = Number(out.priority);
  if (out.direction === 'INGRESS' && !out.sourceRanges && !out.sourceTags && !out.sourceServiceAccounts)
    out.sourceRanges = ['0.0.0.0/0'];
  if (out.direction === 'EGRESS' && !out.destinationRanges) out.destinationRanges = ['0.0.0.0/0'];
  return out;
}

function networkOk(ctx: EmulatorContext, network: unknown): void {
  if (network !== undefined && String(network).split('/').pop() !== 'default') {
    throw notFound(`projects/${ctx.project}/global/networks/${String(network).split('/').pop()}`);
  }
}

/** Firewall rules: insert, get, list, patch (JSON merge) and delete, each a global operation. */
export function firewallRoutes(api: ApiRouter, ctx: EmulatorContext): void {
  const G = '/projects/:project/global/firewalls';
  const find = (req: Request) => {
    const fw = ctx.firewalls.get(req.params.firewall as string);
    if (!fw) throw notFound(`projects/${ctx.project}/global/firewalls/${req.params.firewall as string}`);
    return fw;
  };
  const done = (type: string, fw: Resource) =>
    ctx.ops.start({ kind: 'global' }, type, { link: fw.selfLink, id: fw.id }, () =>
      ctx.ops.sleep(ctx.cfg.delays.otherMs),
    );

  api.post(G, 'compute.firewalls.insert', (req) =>
    idempotent(ctx, req, () => {
      const body = (req.body ?? {}) as Body;
      const name = body.name;
      if (typeof name !== 'string' || !name) throw required('resource.name');
      if (!NAME_RE.test(name)) throw invalidField('resource.name', name, NAME_RULE);
      if (ctx.firewalls.has(name)) throw alreadyExists(`projects/${ctx.project}/global/firewalls/${name}`);
      networkOk(ctx, body.network);
      validateRule(body);
      const fw = render(ctx, name, body);
      ctx.firewalls.set(name, fw);
      return done('insert', fw);
    }),
  );
  api.get(G, 'compute.firewalls.list', (req) =>
    listPage(
      [...ctx.firewalls.values()],
      req.query as ListQuery,
      'compute#firewallList',
      link(`${globalPath(ctx.project)}/firewalls`),
    ),
  );
  api.get(`${G}/:firewall`, 'compute.firewalls.get', (req) => find(req));
  api.patch(`${G}/:firewall`, 'compute.firewalls.patch', (req) =>
    idempotent(ctx, req, () => {
      const fw = find(req);
      const patch = (req.body ?? {}) as Body;
      if (patch.name !== undefined && patch.name !== fw.name)
        throw invalidField('resource.name', patch.name, 'The name of a firewall rule cannot change.');
      networkOk(ctx, patch.network);
      const merged: Body = { ...fw };
      for (const [k, v] of Object.entries(patch)) {
        if (v === null) delete merged[k];
        else merged[k] = v;
      }
      // allowed and denied exclude each other, so setting one clears the other.
      if (patch.allowed) delete merged.denied;
      if (patch.denied) delete merged.allowed;
      validateRule(merged);
      const next = render(ctx, fw.name, merged, fw.id, String(fw.creationTimestamp));
      ctx.firewalls.set(fw.name, next);
      return done('patch', next);
    }),
  );
  api.delete(`${G}/:firewall`, 'compute.firewalls.delete', (req) =>
    idempotent(ctx, req, () => {
      const fw = find(req);
      ctx.firewalls.delete(fw.name);
      return done('delete', fw);
    }),
  );
}
