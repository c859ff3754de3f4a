import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { Duplex } from 'node:stream';
import { constants, createDeflate, createInflate, type Deflate, type Inflate } from 'node:zlib';

/**
 * The server side of SPDY/3.1 as Kubernetes uses it for exec, attach and port-forward: after an
 * HTTP upgrade, the client opens one stream per channel (SYN_STREAM with a `streamType` header)
 * and the server accepts each with a SYN_REPLY. Only the frames that traffic needs are handled;
 * like the Go library the API server uses, send-side flow-control windows are not enforced.
 */

// The SPDY/3 header-compression dictionary (spec section 2.6.10.1), from spdy-transport.
const require = createRequire(import.meta.url);
const DICTIONARY = (
  require('spdy-transport/lib/spdy-transport/protocol/spdy/dictionary.js') as Record<number, Buffer>
)[3]!;

const SYN_STREAM = 1;
const SYN_REPLY = 2;
const RST_STREAM = 3;
const PING = 6;
const GOAWAY = 7;
const WINDOW_UPDATE = 9;
const FLAG_FIN = 0x01;
const MAX_FRAME = 16 * 1024 * 1024;
const DATA_CHUNK = 32 * 1024;

/** One SPDY stream as a byte duplex: reading gets the peer's data, writing sends DATA frames. */
export class SpdyStream extends Duplex {
  constructor(
    readonly id: number,
    /** Header names lowercased, as SPDY/3 requires. */
    readonly headers: Record<string, string>,
    private readonly conn: SpdyServerConnection,
  ) {
    super({ allowHalfOpen: true });
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.conn.sendData(this.id, chunk, false, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.conn.sendData(this.id, Buffer.alloc(0), true, cb);
  }

  /** Data from the peer. */
  receive(data: Buffer, fin: boolean): void {
    if (data.length) this.push(data);
    if (fin) this.push(null);
  }
}

/** A SPDY/3.1 server session over an upgraded socket; emits 'stream' for each stream the client opens. */
export class SpdyServerConnection extends EventEmitter {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly streams = new Map<number, SpdyStream>();
  private readonly inflate: Inflate = createInflate({ dictionary: DICTIONARY });
  private readonly deflate: Deflate = createDeflate({ dictionary: DICTIONARY });
  private work: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly socket: Duplex) {
    super();
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('close', () => this.destroyAll());
    socket.on('error', () => this.destroyAll());
  }

  /** Sends GOAWAY and closes the socket once everything queued is written. */
  close(): void {
    if (this.closed) return;
    const body = Buffer.alloc(8);
    body.writeUInt32BE(this.lastStreamId() & 0x7fffffff, 0);
    this.writeControl(GOAWAY, 0, body);
    this.closed = true;
    this.socket.end();
  }

  sendData(id: number, data: Buffer, fin: boolean, cb: (err?: Error | null) => void): void {
    if (this.closed || this.socket.destroyed) return cb(new Error('SPDY connection closed'));
    let off = 0;
    do {
      const part = data.subarray(off, off + DATA_CHUNK);
      off += part.length;
      const last = off >= data.length;
      const head = Buffer.alloc(8);
      head.writeUInt32BE(id & 0x7fffffff, 0);
      head.writeUInt32BE(((last && fin ? FLAG_FIN : 0) << 24) | part.length, 4);
      const ok = this.socket.write(Buffer.concat([head, part]));
      if (last) {
        if (ok) cb();
        else this.socket.once('drain', () => cb());
      }
    } while (off < data.length);
  }

  private lastStreamId(): number {
    return Math.max(0, ...this.streams.keys());
  }

  private onData(d: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, d]) : d;
    while (this.buffer.length >= 8) {
      const length = this.buffer.readUInt32BE(4) & 0xffffff;
      if (length > MAX_FRAME) {
        this.socket.destroy(new Error('SPDY frame too large'));
        return;
      }
      if (this.buffer.length < 8 + length) return;
      const frame = this.buffer.subarray(0, 8 + length);
      this.buffer = this.buffer.subarray(8 + length);
      // Header blocks share one compression context, so frames are handled strictly in order.
      this.work = this.work
        .then(() => this.handle(frame))
        .catch((err: unknown) => {
          this.socket.destroy(err as Error);
        });
    }
  }

  private async handle(frame: Buffer): Promise<void> {
    const flags = frame[4]!;
    const body = frame.subarray(8);
    if ((frame[0]! & 0x80) === 0) {
      const id = frame.readUInt32BE(0) & 0x7fffffff;
      const stream = this.streams.get(id);
      if (body.length) this.windowUpdate(id, body.length);
      stream?.receive(Buffer.from(body), (flags & FLAG_FIN) !== 0);
      return;
    }
    const version = frame.readUInt16BE(0) & 0x7fff;
    const type = frame.readUInt16BE(2);
    if (version !== 3) throw new Error(`unsupported SPDY version ${version}`);
    switch (type) {
      case SYN_STREAM: {
        const id = body.readUInt32BE(0) & 0x7fffffff;
        const headers = await this.readHeaders(body.subarray(10));
        const stream = new SpdyStream(id, headers, this);
        this.streams.set(id, stream);
        stream.once('close', () => this.streams.delete(id));
        await this.reply(id);
        if (flags & FLAG_FIN) stream.receive(Buffer.alloc(0), true);
        this.emit('stream', stream);
        break;
      }
      case RST_STREAM: {
        const id = body.readUInt32BE(0) & 0x7fffffff;
        this.streams.get(id)?.destroy();
        break;
      }
      case PING:
        this.writeControl(PING, 0, Buffer.from(body));
        break;
      case GOAWAY:
        this.emit('goaway');
        break;
      default:
        // SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do for this traffic.
        break;
    }
  }

  private async reply(id: number): Promise<void> {
    const block = await this.compress(Buffer.alloc(4));
    const body = Buffer.alloc(4);
    body.writeUInt32BE(id & 0x7fffffff, 0);
    this.writeControl(SYN_REPLY, 0, Buffer.concat([body, block]));
  }

  private windowUpdate(id: number, delta: number): void {
    const session = Buffer.alloc(8);
    session.writeUInt32BE(0, 0);
    session.writeUInt32BE(delta, 4);
    this.writeControl(WINDOW_UPDATE, 0, session);
    const stream = Buffer.alloc(8);
    stream.writeUInt32BE(id & 0x7fffffff, 0);
    stream.writeUInt32BE(delta, 4);
    this.writeControl(WINDOW_UPDATE, 0, stream);
  }

  private writeControl(type: number, flags: number, body: Buffer): void {
    if (this.closed || this.socket.destroyed) return;
    const head = Buffer.alloc(8);
    head.writeUInt16BE(0x8000 | 3, 0);
    head.writeUInt16BE(type, 2);
    head.writeUInt32BE((flags << 24) | body.length, 4);
    this.socket.write(Buffer.concat([head, body]));
  }

  private async readHeaders(block: Buffer): Promise<Record<string, string>> {
    const raw = await this.flushThrough(this.inflate, block);
    const headers: Record<string, string> = {};
    const n = raw.readUInt32BE(0);
    let off = 4;
    for (let i = 0; i < n; i++) {
      const nl = raw.readUInt32BE(off);
      const name = raw
        .subarray(off + 4, off + 4 + nl)
        .toString()
        .toLowerCase();
      off += 4 + nl;
      const vl = raw.readUInt32BE(off);
      headers[name] = raw.subarray(off + 4, off + 4 + vl).toString();
      off += 4 + vl;
    }
    return headers;
  }

  private compress(raw: Buffer): Promise<Buffer> {
    return this.flushThrough(this.deflate, raw);
  }

  /** Feeds `input` through a persistent zlib context and returns what it produced up to a sync flush. */
  private flushThrough(z: Inflate | Deflate, input: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const onData = (d: Buffer) => out.push(d);
      const onError = (err: Error) => {
        z.off('data', onData);
        reject(err);
      };
      z.on('data', onData);
      z.once('error', onError);
      z.write(input);
      z.flush(constants.Z_SYNC_FLUSH, () => {
        // Output pushed while the flush completed may be emitted a tick later.
        setImmediate(() => {
          z.off('data', onData);
          z.off('error', onError);
          resolve(Buffer.concat(out));
        });
      });
    });
  }

  private destroyAll(): void {
    this.closed = true;
    for (const s of this.streams.values()) s.destroy();
    this.streams.clear();
    this.inflate.close();
    this.deflate.close();
    this.emit('close');
  }
}
