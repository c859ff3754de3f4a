import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { servicecontrol_v1 } from '@googleapis/servicecontrol';
import { Counter, type Registry } from 'prom-client';
import { validateConfig } from '../../lib/config-file.ts';
import type { Logger } from '../../lib/log.ts';
import { metricsHandler } from '../../lib/metrics.ts';
import { CHECK_ERROR_CODES, type CheckErrorCode, type EmulatorConfig } from './config.ts';
import { FaultSet, faultSchema, type Fault } from './faults.ts';
import { OperationLog } from './operations.ts';

type Operation = servicecontrol_v1.Schema$Operation;
type Method = 'check' | 'report';

const CONSUMER_ID = /^(project|project_number|projects|apiKey|api_key):\S+$/;
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

export interface ServiceControlEmulatorOptions {
  config: EmulatorConfig;
  log: Logger;
  registry: Registry;
}

/** A running emulator: its URL (the client's `rootUrl`), its recorded state, and how to stop it. */
export interface ServiceControlEmulator {
  url: string;
  port: number;
  operations: OperationLog;
  faults: FaultSet;
  close(): Promise<void>;
}

/** An error in Google's JSON error shape. */
function sendError(res: Response, code: number, status: string, message: string): void {
  res.status(code).json({ error: { code, status, message } });
}

/** Why an operation is not acceptable, or undefined; the real service names the field the same way. */
function invalidOperation(serviceName: string, op: Operation, forCheck: boolean): string | undefined {
  if (!op || typeof op !== 'object') return 'operation is required';
  if (!op.operationId) return 'operation.operationId is required';
  if (!op.operationName) return 'operation.operationName is required';
  if (!op.consumerId || !CONSUMER_ID.test(op.consumerId)) {
    return `operation.consumerId "${op.consumerId ?? ''}" must be project:<id>, project_number:<n> or apiKey:<key>`;
  }
  if (!op.startTime || !RFC3339.test(op.startTime)) return 'operation.startTime must be an RFC 3339 time';
  if (!forCheck && (!op.endTime || !RFC3339.test(op.endTime))) {
    return 'operation.endTime must be an RFC 3339 time';
  }
  if (op.endTime && Date.parse(op.startTime) > Date.parse(op.endTime)) {
    return 'operation.startTime is after operation.endTime';
  }
  for (const [i, set] of (op.metricValueSets ?? []).entries()) {
    if (!set.metricName?.startsWith(`${serviceName}/`)) {
      return `operation.metricValueSets[${i}].metricName "${set.metricName ?? ''}" is not a metric of ${serviceName}`;
    }
    for (const [j, v] of (set.metricValues ?? []).entries()) {
      const field = `operation.metricValueSets[${i}].metricValues[${j}]`;
      const hasInt = v.int64Value !== undefined && v.int64Value !== null;
      const hasDouble = v.doubleValue !== undefined && v.doubleValue !== null;
      if (hasInt === hasDouble) return `${field} needs exactly one of int64Value or doubleValue`;
      if (hasInt && !/^\d+$/.test(String(v.int64Value))) {
        return `${field}.int64Value must be a non-negative integer (billing metrics are DELTA)`;
      }
      if (hasDouble && (typeof v.doubleValue !== 'number' || v.doubleValue < 0)) {
        return `${field}.doubleValue must be a non-negative number`;
      }
    }
  }
  return undefined;
}

/**
 * Starts a Service Control v1 emulator on 127.0.0.1: `services.check` and `services.report` at the
 * real paths (so `@googleapis/servicecontrol` with `rootUrl` talks to it unchanged), plus admin
 * endpoints to read what was billed and to inject faults.
 */
export async function startServiceControlEmulator(
  port: number,
  opts: ServiceControlEmulatorOptions,
): Promise<ServiceControlEmulator> {
  const { log, registry } = opts;
  const operations = new OperationLog();
  const faults = new FaultSet();
  faults.set(opts.config.faults ?? []);
  const consumers = new Map<string, CheckErrorCode>(Object.entries(opts.config.consumers ?? {}));
  const services = opts.config.services ? new Set(opts.config.services) : undefined;
  const calls = new Counter({
    name: 'servicecontrol_emulator_calls_total',
    help: 'check and report calls received, by method and HTTP status answered',
    labelNames: ['method', 'code'],
    registers: [registry],
  });

  const app = express();
  app.use(express.json({ limit: '2mb', strict: false }));

  /** Answers a call with an error in Google's shape, counted by method and HTTP status. */
  const refuse = (method: Method, res: Response, code: number, status: string, message: string) => {
    calls.inc({ method, code });
    sendError(res, code, status, message);
  };
  const injectFault = (method: Method, res: Response, serviceName: string, status: number, note: string) => {
    log.info({ method, serviceName, status }, note);
    refuse(method, res, status, 'UNAVAILABLE', `injected fault: HTTP ${status}`);
  };

  /** Shared front half of check and report: unknown service, injected faults. */
  const preamble = async (method: Method, req: Request, res: Response) => {
    const serviceName = String(req.params.serviceName);
    if (method === 'check') operations.checks++;
    else operations.reports++;
    if (services && !services.has(serviceName)) {
      refuse(method, res, 404, 'NOT_FOUND', `service ${serviceName} not found`);
      return { serviceName, done: true };
    }
    const fault = faults.take(method);
    if (fault?.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs));
    if (fault?.status && !fault.afterRecord) {
      injectFault(method, res, serviceName, fault.status, 'fault injected');
      return { serviceName, done: true };
    }
    return { serviceName, done: false, fault };
  };
  const finish = (
    method: Method,
    res: Response,
    fault: Fault | undefined,
    body: object,
    serviceName: string,
  ) => {
    if (fault?.status) {
      injectFault(method, res, serviceName, fault.status, 'fault injected after recording');
      return;
    }
    calls.inc({ method, code: 200 });
    res.json(body);
  };

  app.post('/v1/services/:serviceName\\:check', async (req, res) => {
    const { serviceName, done, fault } = await preamble('check', req, res);
    if (done) return;
    const op = (req.body as servicecontrol_v1.Schema$CheckRequest | undefined)?.operation as Operation;
    const invalid = invalidOperation(serviceName, op, true);
    if (invalid) {
      refuse('check', res, 400, 'INVALID_ARGUMENT', invalid);
      return;
    }
    const blocked = consumers.get(op.consumerId!);
    const body: servicecontrol_v1.Schema$CheckResponse = blocked
      ? {
          operationId: op.operationId,
          checkErrors: [{ code: blocked, subject: op.consumerId, detail: `${op.consumerId}: ${blocked}` }],
        }
      : {
          operationId: op.operationId,
          serviceConfigId: 'emulated',
          checkInfo: { consumerInfo: { projectNumber: '0', consumerNumber: '0' } },
        };
    finish('check', res, fault, body, serviceName);
  });

  app.post('/v1/services/:serviceName\\:report', async (req, res) => {
    const { serviceName, done, fault } = await preamble('report', req, res);
    if (done) return;
    const ops = (req.body as servicecontrol_v1.Schema$ReportRequest | undefined)?.operations;
    if (!Array.isArray(ops) || ops.length === 0) {
      refuse('report', res, 400, 'INVALID_ARGUMENT', 'operations must be a non-empty list');
      return;
    }
    const reportErrors: servicecontrol_v1.Schema$ReportError[] = [];
    for (const op of ops) {
      const invalid = invalidOperation(serviceName, op, false);
      if (invalid) {
        reportErrors.push({ operationId: op?.operationId, status: { code: 3, message: invalid } });
        continue;
      }
      const blocked = consumers.get(op.consumerId!);
      if (blocked) {
        reportErrors.push({ operationId: op.operationId, status: { code: 7, message: blocked } });
        continue;
      }
      const fresh = operations.record(serviceName, op);
      log.debug({ serviceName, operationId: op.operationId, fresh }, 'operation reported');
    }
    finish('report', res, fault, { serviceConfigId: 'emulated', reportErrors }, serviceName);
  });

  app.get('/admin/operations', (_req, res) => {
    res.json({
      operations: operations.list(),
      totals: operations.totals(),
      duplicates: operations.duplicates,
      checks: operations.checks,
      reports: operations.reports,
    });
  });
  app.delete('/admin/operations', (_req, res) => {
    operations.clear();
    res.json({ cleared: true });
  });
  app.get('/admin/faults', (_req, res) => {
    res.json({ faults: faults.list(), hits: faults.hits });
  });
  app.put('/admin/faults', (req, res) => {
    try {
      const body = validateConfig<{ faults: Fault[] }>(
        req.body,
        {
          type: 'object',
          required: ['faults'],
          properties: { faults: { type: 'array', items: faultSchema } },
        },
        'request body',
      );
      faults.set(body.faults);
      log.info({ faults: body.faults }, 'faults armed');
      res.json({ faults: faults.list() });
    } catch (e) {
      sendError(res, 400, 'INVALID_ARGUMENT', (e as Error).message);
    }
  });
  app.get('/admin/consumers', (_req, res) => {
    res.json({ consumers: Object.fromEntries(consumers) });
  });
  app.put('/admin/consumers/:consumerId', (req, res) => {
    const consumerId = String(req.params.consumerId);
    const code = (req.body as { checkError?: unknown } | undefined)?.checkError;
    if (code === null || code === undefined) consumers.delete(consumerId);
    else if (CHECK_ERROR_CODES.includes(code as CheckErrorCode))
      consumers.set(consumerId, code as CheckErrorCode);
    else {
      sendError(
        res,
        400,
        'INVALID_ARGUMENT',
        `checkError must be null or one of ${CHECK_ERROR_CODES.join(', ')}`,
      );
      return;
    }
    res.json({ consumerId, checkError: consumers.get(consumerId) ?? null });
  });
  app.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  app.get('/metrics', metricsHandler(registry));
  app.use((_req, res) => sendError(res, 404, 'NOT_FOUND', 'no such path'));
  // Bad JSON and other request errors answer 400 instead of express's HTML page.
  app.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
    sendError(res, status, status === 400 ? 'INVALID_ARGUMENT' : 'INTERNAL', err.message);
  });

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(port, '127.0.0.1', (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}/`,
    port: actual,
    operations,
    faults,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
