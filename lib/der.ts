// The few DER (ASN.1 distinguished encoding) builders a leaf X.509 certificate needs. Issuing a
// cell's certificate is on every pod's path, and a general ASN.1 library spends milliseconds per
// certificate parsing and re-serialising schemas; concatenating bytes costs microseconds.

/** One TLV: `tag`, the DER length, then `content`. */
export function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, content]);
}

export const sequence = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
export const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
export const octetString = (b: Buffer): Buffer => tlv(0x04, b);
export const utf8String = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
export const boolean = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));
/** `[n] EXPLICIT` around an encoded value. */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);
/** `[n] IMPLICIT` of a primitive (its content replaces the universal tag's). */
export const implicitPrimitive = (n: number, content: Buffer): Buffer => tlv(0x80 | n, content);

/** A BIT STRING whose first byte of content is the count of unused trailing bits. */
export function bitString(bytes: Buffer, unusedBits = 0): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

/** A non-negative INTEGER from its big-endian magnitude (a 0 byte is prefixed when the top bit is set). */
export function unsignedInteger(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  return tlv(0x02, m[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), m]) : m);
}

export const smallInteger = (n: number): Buffer => unsignedInteger(Buffer.from([n]));

const oidCache = new Map<string, Buffer>();

/** An OBJECT IDENTIFIER from its dotted form. */
export function oid(dotted: string): Buffer {
  let out = oidCache.get(dotted);
  if (out) return out;
  const arcs = dotted.split('.').map(Number);
  const bytes = [40 * arcs[0]! + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const chunk = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    bytes.push(...chunk);
  }
  out = tlv(0x06, Buffer.from(bytes));
  oidCache.set(dotted, out);
  return out;
}

/** UTCTime before 2050 and GeneralizedTime from then on, as RFC 5280 requires. */
export function time(d: Date): Buffer {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '') + 'Z';
  return d.getUTCFullYear() < 2050
    ? tlv(0x17, Buffer.from(digits.slice(2), 'latin1'))
    : tlv(0x18, Buffer.from(digits, 'latin1'));
}

/** A TLV read from `buf` at `offset`: where its content starts and ends. */
export interface Element {
  tag: number;
  start: number;
  contentStart: number;
  end: number;
}

/** Reads the element at `offset` (definite lengths only, as DER has). */
export function readElement(buf: Buffer, offset: number): Element {
  const tag = buf[offset]!;
  let len = buf[offset + 1]!;
  let contentStart = offset + 2;
  if (len & 0x80) {
    const count = len & 0x7f;
    len = 0;
    for (let i = 0; i < count; i++) len = len * 256 + buf[contentStart + i]!;
    contentStart += count;
  }
  const end = contentStart + len;
  if (end > buf.length) throw new Error('DER element runs past the end of its buffer');
  return { tag, start: offset, contentStart, end };
}

/** The elements directly inside a constructed element. */
export function children(buf: Buffer, parent: Element): Element[] {
  const out: Element[] = [];
  for (let at = parent.contentStart; at < parent.end;) {
    const e = readElement(buf, at);
    out.push(e);
    at = e.end;
  }
  return out;
}
