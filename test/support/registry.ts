import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createPrivateKey, randomBytes, sign, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createCA, issueCertificate } from '../../lib/tls.ts';
import { freePort } from '../../lib/free-port.ts';

export interface RegistryOptions {
  /** Basic authentication from an htpasswd file (works over plain http in this registry version). */
  htpasswd?: { username: string; password: string };
  /**
   * Docker token authentication: the registry answers 401 with a Bearer challenge pointing at a
   * token service the helper runs. `users` get pull and push; anonymous callers get pull only
   * when `anonymousPull`, else a token without access (as Docker Hub does for private repos).
   */
  token?: { users: Record<string, string>; anonymousPull?: boolean };
  /** Serve https with a certificate from a fresh CA (returned as `caCert`). */
  tls?: boolean;
}

export interface StartedRegistry {
  /** `127.0.0.1:<port>`. */
  host: string;
  /** The registry's filesystem storage (`docker/registry/v2/...`), for tests that corrupt it. */
  storageDir: string;
  /** The CA of the serving certificate, with `tls`. */
  caCert?: string;
  /** Token requests the token service answered (with `token`). */
  tokenRequests: { user?: string; scope?: string }[];
  stop(): Promise<void>;
}

const live = new Set<{ proc: ChildProcess; dir: string; token?: http.Server }>();
process.once('exit', () => {
  for (const r of live) {
    r.proc.kill('SIGKILL');
    r.token?.close();
    rmSync(r.dir, { recursive: true, force: true });
  }
});

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** A Docker token service: JWTs signed ES256 with the signer's key, the signer's cert in `x5c`. */
async function startTokenService(
  opts: NonNullable<RegistryOptions['token']>,
  signer: { certPem: string; keyPem: string },
  log: StartedRegistry['tokenRequests'],
): Promise<{ server: http.Server; realm: string }> {
  const key = createPrivateKey(signer.keyPem);
  const x5c = [new X509Certificate(signer.certPem).raw.toString('base64')];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const scope = url.searchParams.get('scope') ?? undefined;
    let user: string | undefined;
    const authz = req.headers.authorization;
    if (authz?.startsWith('Basic ')) {
      const plain = Buffer.from(authz.slice(6), 'base64').toString();
      const i = plain.indexOf(':');
      const [u, p] = [plain.slice(0, i), plain.slice(i + 1)];
      if (opts.users[u] !== p) {
        log.push({ user: u, scope });
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ details: 'incorrect username or password' }));
        return;
      }
      user = u;
    }
    log.push({ user, scope });
    const access: { type: string; name: string; actions: string[] }[] = [];
    for (const s of url.searchParams.getAll('scope')) {
      const [type, name, actions] = s.split(':');
      if (type !== 'repository' || !name || !actions) continue;
      const allowed = actions
        .split(',')
        .filter((a) => (user ? ['pull', 'push'] : opts.anonymousPull ? ['pull'] : []).includes(a));
      access.push({ type, name, actions: allowed });
    }
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'ES256', typ: 'JWT', x5c };
    const claims = {
      iss: 'kip-test-token-issuer',
      sub: user ?? '',
      aud: url.searchParams.get('service') ?? '',
      exp: now + 300,
      nbf: now - 30,
      iat: now,
      jti: randomBytes(8).toString('hex'),
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        token: `${input}.${b64url(sig)}`,
        expires_in: 300,
        issued_at: new Date().toISOString(),
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, realm: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/token` };
}

/**
 * Starts the Debian `docker-registry` (distribution 2.8) on a free loopback port with filesystem
 * storage in a temporary directory, optionally behind htpasswd basic auth, Docker token auth,
 * or TLS. Resolves once `/v2/` answers; `stop()` ends it and removes its files.
 */
export async function startRegistry(opts: RegistryOptions = {}): Promise<StartedRegistry> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kip-registry-'));
  const storageDir = path.join(dir, 'data');
  const tokenRequests: StartedRegistry['tokenRequests'] = [];
  const lines = ['version: 0.1', 'log:', '  level: warn', '  accesslog:', '    disabled: true', 'storage:'];
  lines.push('  filesystem:', `    rootdirectory: ${storageDir}`, '  delete:', '    enabled: true');
  let token: { server: http.Server; realm: string } | undefined;
  if (opts.htpasswd) {
    const file = path.join(dir, 'htpasswd');
    // The registry reads bcrypt entries only.
    const entry = execFileSync('htpasswd', [
      '-Bbn',
      opts.htpasswd.username,
      opts.htpasswd.password,
    ]).toString();
    writeFileSync(file, entry);
    lines.push('auth:', '  htpasswd:', '    realm: kip-test', `    path: ${file}`);
  } else if (opts.token) {
    const signer = await createCA('kip-test-token-signer');
    writeFileSync(path.join(dir, 'token-ca.pem'), signer.certPem);
    token = await startTokenService(opts.token, signer, tokenRequests);
    lines.push('auth:', '  token:', `    realm: ${token.realm}`, '    service: kip-test-registry');
    lines.push('    issuer: kip-test-token-issuer', `    rootcertbundle: ${path.join(dir, 'token-ca.pem')}`);
  }
  let caCert: string | undefined;
  const tlsLines: string[] = [];
  if (opts.tls) {
    const ca = await createCA('kip-test-registry-ca');
    const cert = await issueCertificate(ca, {
      commonName: '127.0.0.1',
      hosts: ['127.0.0.1', 'localhost'],
      usage: 'server',
    });
    writeFileSync(path.join(dir, 'tls.crt'), cert.certPem);
    writeFileSync(path.join(dir, 'tls.key'), cert.keyPem);
    caCert = ca.certPem;
    tlsLines.push(
      '  tls:',
      `    certificate: ${path.join(dir, 'tls.crt')}`,
      `    key: ${path.join(dir, 'tls.key')}`,
    );
  }

  let lastErr = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    // docker-registry cannot listen on port 0 and report it, so its port is probed first.
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const config = [
      ...lines,
      'http:',
      `  addr: ${host}`,
      `  secret: ${randomBytes(16).toString('hex')}`,
      ...tlsLines,
    ];
    const configPath = path.join(dir, 'config.yml');
    writeFileSync(configPath, `${config.join('\n')}\n`);
    const proc = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-20_000);
    });
    const entry = { proc, dir, token: token?.server };
    live.add(entry);
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    const up = await waitUp(host, !!opts.tls, proc);
    if (up) {
      return {
        host,
        storageDir,
        caCert,
        tokenRequests,
        async stop() {
          if (proc.exitCode === null && proc.signalCode === null) {
            proc.kill('SIGTERM');
            const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
            await exited;
            clearTimeout(t);
          }
          if (token) await new Promise<void>((resolve) => token.server.close(() => resolve()));
          live.delete(entry);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    proc.kill('SIGKILL');
    await exited;
    live.delete(entry);
    lastErr = stderr;
  }
  token?.server.close();
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`docker-registry did not start:\n${lastErr}`);
}

async function waitUp(host: string, tls: boolean, proc: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) return false;
    const ok = await new Promise<boolean>((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port: Number(host.split(':')[1]) });
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) return true;
    await sleep(50);
  }
  void tls;
  return false;
}

export interface ProxyOptions {
  /** Flip one byte in the body of responses whose path matches (default: none). */
  corrupt?: RegExp;
  /** Answer the first N requests 503 Service Unavailable without forwarding them. */
  failFirst?: number;
}

export interface StartedProxy {
  host: string;
  /** Paths of the GET requests seen, in order. */
  requests: string[];
  stop(): Promise<void>;
}

/**
 * A plain-http proxy in front of `target` (`host:port`) that counts requests, can flip a byte in
 * chosen responses and fail the first requests, to test digest verification, download sharing and
 * retries through the real client.
 */
export async function startRegistryProxy(target: string, opts: ProxyOptions = {}): Promise<StartedProxy> {
  const requests: string[] = [];
  const [thost, tport] = target.split(':');
  let failures = opts.failFirst ?? 0;
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (failures > 0) {
      failures--;
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'try later' }] }));
      return;
    }
    const headers = { ...req.headers, host: target };
    const up = http.request(
      { host: thost, port: Number(tport), method: req.method, path: req.url, headers },
      (ur) => {
        const outHeaders = { ...ur.headers };
        if (outHeaders.location)
          outHeaders.location = String(outHeaders.location).replace(target, `127.0.0.1:${port}`);
        res.writeHead(ur.statusCode ?? 502, outHeaders);
        if (!opts.corrupt?.test(req.url ?? '')) {
          ur.pipe(res);
          return;
        }
        let flipped = false;
        ur.on('data', (chunk: Buffer) => {
          if (!flipped && chunk.length > 0) {
            const copy = Buffer.from(chunk);
            copy[Math.floor(copy.length / 2)]! ^= 0xff;
            flipped = true;
            res.write(copy);
          } else res.write(chunk);
        });
        ur.on('end', () => res.end());
      },
    );
    up.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
