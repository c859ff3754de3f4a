import express, { type Request, type Response } from 'express';
import * as fs from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { Registry } from 'prom-client';
import { Counter } from 'prom-client';
import type { Logger } from '../../lib/log.ts';
import { metricsHandler } from '../../lib/metrics.ts';

/** The label carrying an instance's local share directory (image-cache/filestore-share.ts reads it). */
export const LAB_SHARE_DIR_LABEL = 'kip-lab-share-dir';

const STATE = { STATE_UNSPECIFIED: 0, CREATING: 1, READY: 2, REPAIRING: 3, DELETING: 4, ERROR: 6 } as const;
const TIER: Record<string, number> = {
  TIER_UNSPECIFIED: 0,
  STANDARD: 1,
  PREMIUM: 2,
  BASIC_HDD: 3,
  BASIC_SSD: 4,
  HIGH_SCALE_SSD: 5,
  ENTERPRISE: 6,
  ZONAL: 7,
  REGIONAL: 8,
};
const ADDRESS_MODE: Record<string, number> = { ADDRESS_MODE_UNSPECIFIED: 0, MODE_IPV4: 1 };
const CONNECT_MODE: Record<string, number> = {
  CONNECT_MODE_UNSPECIFIED: 0,
  DIRECT_PEERING: 1,
  PRIVATE_SERVICE_ACCESS: 2,
};

interface StoredInstance {
  name: string;
  description?: string;
  state: keyof typeof STATE;
  createTime: string;
  tier: string;
  labels: Record<string, string>;
  fileShares: { name: string; capacityGb: string }[];
  networks: {
    network: string;
    modes: string[];
    reservedIpRange?: string;
    ipAddresses: string[];
    connectMode: string;
  }[];
  etag: string;
  /** The share's local directory. */
  dir: string;
}

interface StoredOperation {
  name: string;
  metadata: Record<string, unknown>;
  done: boolean;
  response?: Record<string, unknown>;
  error?: { code: number; message: string };
}

export interface FilestoreEmulatorOptions {
  /** Where instances' shares are made: `<dataDir>/<project>/<location>/<instance>/<share>`. */
  dataDir: string;
  /** How long create and delete operations take (default 200 ms). */
  operationDelayMs?: number;
  log: Logger;
  registry: Registry;
}

export interface FilestoreEmulator {
  url: string;
  port: number;
  close(): Promise<void>;
}

class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly status: string,
    message: string,
  ) {
    super(message);
  }
}

const badRequest = (field: string, why: string) => new ApiError(400, 'INVALID_ARGUMENT', `${field}: ${why}`);

function enumName(table: Record<string, number>, v: unknown, field: string): string {
  if (typeof v === 'number') {
    const name = Object.keys(table).find((k) => table[k] === v);
    if (name) return name;
  } else if (typeof v === 'string' && v in table) return v;
  throw badRequest(field, `unknown value ${JSON.stringify(v)}`);
}

/**
 * Filestore v1 over REST, as @google-cloud/filestore (fallback mode) calls it: instances
 * get/list/create/delete, create and delete as long-running operations, operations get. An
 * instance's share is a local directory, named in its labels, since nothing here serves NFS.
 */
export async function startFilestoreEmulator(
  port: number,
  opts: FilestoreEmulatorOptions,
): Promise<FilestoreEmulator> {
  const delay = opts.operationDelayMs ?? 200;
  const instances = new Map<string, StoredInstance>();
  const operations = new Map<string, StoredOperation>();
  const timers = new Set<NodeJS.Timeout>();
  let opSeq = 0;
  const requests = new Counter({
    name: 'filestore_emulator_requests_total',
    help: 'Requests by method and HTTP code',
    labelNames: ['method', 'code'] as const,
    registers: [opts.registry],
  });

  const numeric = (req: Request) => /enum-encoding=int/.test(String(req.query.$alt ?? ''));
  const render = (inst: StoredInstance, ints: boolean): Record<string, unknown> => ({
    name: inst.name,
    ...(inst.description ? { description: inst.description } : {}),
    state: ints ? STATE[inst.state] : inst.state,
    createTime: inst.createTime,
    tier: ints ? TIER[inst.tier] : inst.tier,
    labels: inst.labels,
    fileShares: inst.fileShares,
    networks: inst.networks.map((n) => ({
      ...n,
      modes: ints ? n.modes.map((m) => ADDRESS_MODE[m]) : n.modes,
      connectMode: ints ? CONNECT_MODE[n.connectMode] : n.connectMode,
    })),
    etag: inst.etag,
  });
  const later = (fn: () => Promise<void>) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn().catch((err: unknown) => opts.log.error({ err }, 'operation failed'));
    }, delay);
    timers.add(t);
  };
  const newOperation = (parent: string, target: string, verb: string): StoredOperation => {
    const op: StoredOperation = {
      name: `${parent}/operations/operation-${Date.now()}-${++opSeq}`,
      metadata: {
        '@type': 'type.googleapis.com/google.cloud.common.OperationMetadata',
        createTime: new Date().toISOString(),
        target,
        verb,
        apiVersion: 'v1',
      },
      done: false,
    };
    operations.set(op.name, op);
    return op;
  };
  const finish = (op: StoredOperation, response: Record<string, unknown>) => {
    op.metadata = { ...op.metadata, endTime: new Date().toISOString() };
    op.done = true;
    op.response = response;
  };

  const app = express();
  app.use(express.json({ limit: '1mb' }));
  app.get('/metrics', metricsHandler(opts.registry));

  const handle =
    (method: string, fn: (req: Request, res: Response) => Promise<void> | void) =>
    async (req: Request, res: Response) => {
      try {
        await fn(req, res);
        requests.inc({ method, code: String(res.statusCode) });
      } catch (err) {
        const e =
          err instanceof ApiError
            ? err
            : new ApiError(500, 'INTERNAL', `internal error: ${(err as Error).message}`);
        if (!(err instanceof ApiError)) opts.log.error({ err }, 'request failed');
        requests.inc({ method, code: String(e.code) });
        res.status(e.code).json({ error: { code: e.code, message: e.message, status: e.status } });
      }
    };
  const parentOf = (req: Request) => `projects/${req.params.project}/locations/${req.params.location}`;
  const lookup = (name: string) => {
    const inst = instances.get(name);
    if (!inst) throw new ApiError(404, 'NOT_FOUND', `Resource '${name}' was not found`);
    return inst;
  };

  app.get(
    '/v1/projects/:project/locations/:location/instances/:instance',
    handle('instances.get', (req, res) => {
      res.json(render(lookup(`${parentOf(req)}/instances/${req.params.instance}`), numeric(req)));
    }),
  );

  app.get(
    '/v1/projects/:project/locations/:location/instances',
    handle('instances.list', (req, res) => {
      const loc = req.params.location;
      const prefix =
        loc === '-' ? `projects/${req.params.project}/locations/` : `${parentOf(req)}/instances/`;
      const all = [...instances.values()]
        .filter((i) => i.name.startsWith(prefix))
        .sort((a, b) => a.name.localeCompare(b.name));
      const size = req.query.pageSize === undefined ? 100 : Number(req.query.pageSize);
      if (!Number.isInteger(size) || size < 0) throw badRequest('pageSize', 'must be a non-negative integer');
      const start = req.query.pageToken
        ? Number(Buffer.from(String(req.query.pageToken), 'base64url').toString())
        : 0;
      if (!Number.isInteger(start) || start < 0)
        throw badRequest('pageToken', 'not a token this server gave');
      const page = all.slice(start, start + (size || 100));
      const next =
        start + page.length < all.length
          ? Buffer.from(String(start + page.length)).toString('base64url')
          : undefined;
      res.json({
        instances: page.map((i) => render(i, numeric(req))),
        ...(next ? { nextPageToken: next } : {}),
        unreachable: [],
      });
    }),
  );

  app.post(
    '/v1/projects/:project/locations/:location/instances',
    handle('instances.create', async (req, res) => {
      const parent = parentOf(req);
      const id = String(req.query.instanceId ?? '');
      if (!/^[a-z][a-z0-9-]{0,62}$/.test(id))
        throw badRequest(
          'instanceId',
          `"${id}" must be 1-63 lowercase letters, digits or hyphens, starting with a letter`,
        );
      const name = `${parent}/instances/${id}`;
      if (instances.has(name)) throw new ApiError(409, 'ALREADY_EXISTS', `Resource '${name}' already exists`);
      const body = (req.body ?? {}) as Record<string, unknown>;
      const tier = enumName(TIER, body.tier ?? 0, 'instance.tier');
      if (tier === 'TIER_UNSPECIFIED') throw badRequest('instance.tier', 'is required');
      const shares = body.fileShares as { name?: unknown; capacityGb?: unknown }[] | undefined;
      if (!Array.isArray(shares) || shares.length !== 1)
        throw badRequest('instance.fileShares', 'exactly one file share is required');
      const shareName = String(shares[0]!.name ?? '');
      if (!/^[a-zA-Z][a-zA-Z0-9_]{0,15}$/.test(shareName))
        throw badRequest(
          'instance.fileShares[0].name',
          `"${shareName}" must be 1-16 letters, digits or underscores, starting with a letter`,
        );
      const capacity = Number(shares[0]!.capacityGb);
      if (!Number.isInteger(capacity) || capacity < 1024)
        throw badRequest('instance.fileShares[0].capacityGb', 'must be an integer of at least 1024');
      const nets = body.networks as Record<string, unknown>[] | undefined;
      if (!Array.isArray(nets) || nets.length === 0 || !nets[0]!.network)
        throw badRequest('instance.networks[0].network', 'is required');
      const labels = (body.labels ?? {}) as Record<string, string>;
      if (LAB_SHARE_DIR_LABEL in labels)
        throw badRequest(`instance.labels.${LAB_SHARE_DIR_LABEL}`, 'is set by the server');
      const dir = path.join(
        opts.dataDir,
        String(req.params.project),
        String(req.params.location),
        id,
        shareName,
      );
      const inst: StoredInstance = {
        name,
        description: typeof body.description === 'string' ? body.description : undefined,
        state: 'CREATING',
        createTime: new Date().toISOString(),
        tier,
        labels: { ...labels, [LAB_SHARE_DIR_LABEL]: dir },
        fileShares: [{ name: shareName, capacityGb: String(capacity) }],
        networks: nets.map((n, i) => ({
          network: String(n.network),
          modes: (Array.isArray(n.modes) ? n.modes : [1]).map((m, j) =>
            enumName(ADDRESS_MODE, m, `instance.networks[${i}].modes[${j}]`),
          ),
          reservedIpRange: typeof n.reservedIpRange === 'string' ? n.reservedIpRange : undefined,
          // Nothing here serves NFS; the address only has to be one the lab can name.
          ipAddresses: ['127.0.0.1'],
          connectMode: enumName(CONNECT_MODE, n.connectMode ?? 1, `instance.networks[${i}].connectMode`),
        })),
        etag: String(Date.now()),
        dir,
      };
      instances.set(name, inst);
      const op = newOperation(parent, name, 'create');
      later(async () => {
        await fs.mkdir(dir, { recursive: true });
        inst.state = 'READY';
        finish(op, {
          '@type': 'type.googleapis.com/google.cloud.filestore.v1.Instance',
          ...render(inst, false),
        });
        opts.log.info({ instance: name, dir }, 'instance ready');
      });
      res.json(op);
    }),
  );

  app.delete(
    '/v1/projects/:project/locations/:location/instances/:instance',
    handle('instances.delete', (req, res) => {
      const name = `${parentOf(req)}/instances/${req.params.instance}`;
      const inst = lookup(name);
      if (inst.state === 'CREATING' || inst.state === 'DELETING')
        throw new ApiError(
          400,
          'FAILED_PRECONDITION',
          `instance ${name} is ${inst.state}; wait for its operation`,
        );
      inst.state = 'DELETING';
      const op = newOperation(parentOf(req), name, 'delete');
      later(async () => {
        await fs.rm(path.dirname(inst.dir), { recursive: true, force: true });
        instances.delete(name);
        finish(op, { '@type': 'type.googleapis.com/google.protobuf.Empty' });
        opts.log.info({ instance: name }, 'instance deleted');
      });
      res.json(op);
    }),
  );

  app.get(
    '/v1/projects/:project/locations/:location/operations/:operation',
    handle('operations.get', (req, res) => {
      const name = `${parentOf(req)}/operations/${req.params.operation}`;
      const op = operations.get(name);
      if (!op) throw new ApiError(404, 'NOT_FOUND', `Operation '${name}' was not found`);
      res.json(op);
    }),
  );

  app.use(
    handle('unknown', (req) => {
      throw new ApiError(404, 'NOT_FOUND', `no such method: ${req.method} ${req.path}`);
    }),
  );

  // A body that is not JSON: the same error shape as every other refusal.
  app.use((err: Error & { status?: number }, _req: Request, res: Response, next: (e?: unknown) => void) => {
    if (res.headersSent) return next(err);
    const code = err.status && err.status < 500 ? err.status : 500;
    res.status(code).json({
      error: {
        code,
        message: `request body: ${err.message}`,
        status: code === 400 ? 'INVALID_ARGUMENT' : 'INTERNAL',
      },
    });
  });

  const server: Server = app.listen(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    close: async () => {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
