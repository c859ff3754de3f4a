/**
 * Decoding the protobuf request bodies kubectl's typed-client commands send (`create configmap`,
 * `create secret`, `create namespace`, `create serviceaccount`, `create token`, `auth can-i`,
 * `certificate approve`): the `k8s\0` envelope (runtime.Unknown) and the few messages those
 * commands use. Field numbers were checked against what kubectl 1.32 sends. A kind or field not
 * described here is refused with 415 rather than guessed, so nothing is stored half-decoded.
 */
import { ApiError, badRequest } from './api-errors.ts';
import { isoSeconds } from './object.ts';

type FieldType =
  | 'string'
  | 'bytes'
  | 'int'
  | 'bool'
  | 'time'
  | Message
  | { list: FieldType }
  | { map: 'string' | 'bytes' | Message };
interface Message {
  [field: number]: [name: string, type: FieldType];
}

const TIME: Message = { 1: ['seconds', 'int'], 2: ['nanos', 'int'] };
const OBJECT_META: Message = {
  1: ['name', 'string'],
  2: ['generateName', 'string'],
  3: ['namespace', 'string'],
  4: ['selfLink', 'string'],
  5: ['uid', 'string'],
  6: ['resourceVersion', 'string'],
  7: ['generation', 'int'],
  8: ['creationTimestamp', 'time'],
  9: ['deletionTimestamp', 'time'],
  10: ['deletionGracePeriodSeconds', 'int'],
  11: ['labels', { map: 'string' }],
  12: ['annotations', { map: 'string' }],
  14: ['finalizers', { list: 'string' }],
};
const STATUS_IGNORED: Message = {};

const MESSAGES: Record<string, Message> = {
  'v1/ConfigMap': {
    1: ['metadata', OBJECT_META],
    2: ['data', { map: 'string' }],
    3: ['binaryData', { map: 'bytes' }],
    4: ['immutable', 'bool'],
  },
  'v1/Secret': { 1: ['metadata', OBJECT_META], 2: ['data', { map: 'bytes' }], 3: ['type', 'string'] },
  'v1/Namespace': {
    1: ['metadata', OBJECT_META],
    2: ['spec', { 1: ['finalizers', { list: 'string' }] }],
    3: ['status', { 1: ['phase', 'string'] }],
  },
  'v1/ServiceAccount': { 1: ['metadata', OBJECT_META] },
  'authentication.k8s.io/v1/TokenRequest': {
    1: ['metadata', OBJECT_META],
    2: [
      'spec',
      {
        1: ['audiences', { list: 'string' }],
        3: [
          'boundObjectRef',
          { 1: ['kind', 'string'], 2: ['apiVersion', 'string'], 3: ['name', 'string'], 4: ['uid', 'string'] },
        ],
        4: ['expirationSeconds', 'int'],
      },
    ],
    3: ['status', STATUS_IGNORED],
  },
  'authorization.k8s.io/v1/SelfSubjectAccessReview': {
    1: ['metadata', OBJECT_META],
    2: [
      'spec',
      {
        1: [
          'resourceAttributes',
          {
            1: ['namespace', 'string'],
            2: ['verb', 'string'],
            3: ['group', 'string'],
            4: ['version', 'string'],
            5: ['resource', 'string'],
            6: ['name', 'string'],
            7: ['subresource', 'string'],
          },
        ],
        2: ['nonResourceAttributes', { 1: ['path', 'string'], 2: ['verb', 'string'] }],
      },
    ],
    3: ['status', STATUS_IGNORED],
  },
  'certificates.k8s.io/v1/CertificateSigningRequest': {
    1: ['metadata', OBJECT_META],
    2: [
      'spec',
      {
        1: ['request', 'bytes'],
        2: ['username', 'string'],
        3: ['uid', 'string'],
        4: ['groups', { list: 'string' }],
        5: ['usages', { list: 'string' }],
        6: ['extra', { map: { 1: ['items', { list: 'string' }] } }],
        7: ['signerName', 'string'],
        8: ['expirationSeconds', 'int'],
      },
    ],
    3: [
      'status',
      {
        1: [
          'conditions',
          {
            list: {
              1: ['type', 'string'],
              2: ['reason', 'string'],
              3: ['message', 'string'],
              4: ['lastUpdateTime', 'time'],
              5: ['lastTransitionTime', 'time'],
              6: ['status', 'string'],
            },
          },
        ],
        2: ['certificate', 'bytes'],
      },
    ],
  },
};

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw unreadable('truncated varint');
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
    throw unreadable('varint too long');
  }

  bytes(): Buffer {
    const len = this.varint();
    if (this.pos + len > this.buf.length) throw unreadable('truncated field');
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 2) this.bytes();
    else if (wire === 1) this.pos += 8;
    else if (wire === 5) this.pos += 4;
    else throw unreadable(`wire type ${wire}`);
  }
}

function unreadable(why: string): ApiError {
  return badRequest(`unable to decode the protobuf request body: ${why}`);
}

function unsupported(what: string): ApiError {
  return new ApiError(
    415,
    'UnsupportedMediaType',
    `the emulator does not decode ${what} from protobuf; send JSON or YAML (kubectl create -f / apply -f)`,
  );
}

function decodeValue(type: FieldType, wire: number, r: Reader, path: string): unknown {
  if (type === 'int' || type === 'bool') {
    if (wire !== 0) throw unreadable(`${path}: expected a varint`);
    const n = r.varint();
    return type === 'bool' ? n !== 0 : n;
  }
  if (wire !== 2) throw unreadable(`${path}: expected a length-delimited field`);
  const raw = r.bytes();
  if (type === 'string') return raw.toString('utf8');
  if (type === 'bytes') return raw.toString('base64');
  if (type === 'time') {
    const t = decodeMessage(TIME, raw, path) as { seconds?: number };
    return t.seconds ? isoSeconds(t.seconds * 1000) : undefined;
  }
  return decodeMessage(type as Message, raw, path);
}

function isEmpty(v: unknown): boolean {
  return v === undefined || v === '' || v === 0;
}

function decodeMessage(schema: Message, buf: Buffer, path: string): Record<string, unknown> {
  const r = new Reader(buf);
  const out: Record<string, unknown> = {};
  while (!r.done()) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    const spec = schema[field];
    if (schema === STATUS_IGNORED) {
      r.skip(wire);
      continue;
    }
    if (!spec) throw unsupported(`field ${field} of ${path || 'the object'}`);
    const [name, type] = spec;
    const where = path ? `${path}.${name}` : name;
    if (typeof type === 'object' && 'list' in type) {
      const v = decodeValue(type.list as FieldType, wire, r, where);
      ((out[name] ??= []) as unknown[]).push(v);
    } else if (typeof type === 'object' && 'map' in type) {
      if (wire !== 2) throw unreadable(`${where}: expected a map entry`);
      const entry = decodeMessage(
        { 1: ['key', 'string'], 2: ['value', type.map as FieldType] },
        r.bytes(),
        where,
      );
      const map = (out[name] ??= {}) as Record<string, unknown>;
      map[String(entry.key ?? '')] = entry.value ?? (type.map === 'string' || type.map === 'bytes' ? '' : {});
    } else {
      const v = decodeValue(type, wire, r, where);
      if (isEmpty(v)) delete out[name];
      else out[name] = v;
    }
  }
  return out;
}

/** The JSON form of a protobuf-encoded Kubernetes object, or 415 when its kind is not described. */
export function decodeProtobufObject(body: Buffer): Record<string, unknown> {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC))
    throw unreadable('missing the k8s protobuf envelope');
  const envelope = decodeMessage(
    {
      1: ['typeMeta', { 1: ['apiVersion', 'string'], 2: ['kind', 'string'] }],
      2: ['raw', 'bytes'],
      3: ['contentEncoding', 'string'],
      4: ['contentType', 'string'],
    },
    body.subarray(4),
    '',
  ) as { typeMeta?: { apiVersion?: string; kind?: string }; raw?: string };
  const apiVersion = envelope.typeMeta?.apiVersion ?? '';
  const kind = envelope.typeMeta?.kind ?? '';
  const schema = MESSAGES[`${apiVersion}/${kind}`];
  if (!schema) throw unsupported(`${kind || 'objects'} (${apiVersion || 'unknown version'})`);
  const obj = decodeMessage(schema, Buffer.from(envelope.raw ?? '', 'base64'), '');
  // Drop the empty status/spec a typed client always sends, as the JSON encoder would.
  if (obj.status && Object.keys(obj.status).length === 0) delete obj.status;
  return { apiVersion, kind, ...obj };
}
