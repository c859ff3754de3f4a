import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { promisify } from 'node:util';
import { CloudFilestoreManagerClient } from '@google-cloud/filestore';
import { PassThroughClient } from 'google-auth-library';

const execFileP = promisify(execFile);

/**
 * The label the lab's Filestore emulator puts on an instance: the local directory standing for
 * its share. A real instance never carries it; the controller honours it only with
 * --filestore-endpoint (the emulator), in place of an NFS mount.
 */
export const LAB_SHARE_DIR_LABEL = 'kip-lab-share-dir';

export interface FilestoreShare {
  instance: string;
  /** The instance's first IP address: the NFS server. */
  ipAddress: string;
  /** The file share's name: the NFS export is `/<name>`. */
  shareName: string;
  /** Lab only: the emulator's local directory for the share. */
  localDir?: string;
}

/** A share that cannot be used: the message says what to do. */
export class ShareError extends Error {}

/** A Filestore client for `endpoint` (the lab emulator, plain http and no credentials) or the real API. */
export function filestoreClient(endpoint?: string): CloudFilestoreManagerClient {
  if (!endpoint) return new CloudFilestoreManagerClient({ fallback: true });
  const u = new URL(endpoint);
  return new CloudFilestoreManagerClient({
    apiEndpoint: u.hostname,
    port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)),
    protocol: u.protocol.replace(':', ''),
    fallback: true,
    authClient: new PassThroughClient(),
  });
}

/** Looks the instance up through the Filestore API: where its share is served, and under what name. */
export async function resolveFilestoreShare(instance: string, endpoint?: string): Promise<FilestoreShare> {
  const client = filestoreClient(endpoint);
  try {
    let got;
    try {
      [got] = await client.getInstance({ name: instance });
    } catch (err) {
      const code = (err as { code?: number }).code;
      if (code === 5)
        throw new ShareError(`--filestore-instance ${instance} does not exist; create it or fix the name`);
      throw new ShareError(
        `--filestore-instance ${instance}: the Filestore API failed (${(err as Error).message}); check access and retry`,
      );
    }
    const state = String(got.state ?? 'STATE_UNSPECIFIED');
    if (state !== 'READY' && state !== '2')
      throw new ShareError(
        `--filestore-instance ${instance} is ${state}, not READY; wait for it and restart`,
      );
    const ipAddress = got.networks?.[0]?.ipAddresses?.[0];
    const shareName = got.fileShares?.[0]?.name;
    if (!ipAddress || !shareName)
      throw new ShareError(
        `--filestore-instance ${instance} has no IP address or file share; check the instance`,
      );
    const localDir = endpoint ? (got.labels?.[LAB_SHARE_DIR_LABEL] ?? undefined) : undefined;
    return { instance, ipAddress, shareName, localDir };
  } finally {
    await client.close();
  }
}

async function isMountPoint(dir: string): Promise<boolean> {
  const mounts = await fs.readFile('/proc/mounts', 'utf8').catch(() => '');
  return mounts.split('\n').some((l) => l.split(' ')[1] === dir);
}

/** Checks that `dir` is a directory this process can write: the share as mounted there. */
export async function checkWritableDir(dir: string, flag: string): Promise<void> {
  try {
    const st = await fs.stat(dir);
    if (!st.isDirectory()) throw new ShareError(`${flag} ${dir} is not a directory`);
    await fs.access(dir, fs.constants.W_OK);
  } catch (err) {
    if (err instanceof ShareError) throw err;
    throw new ShareError(
      `${flag} ${dir} is not a writable directory (${(err as Error).message}); mount the cache share there`,
    );
  }
}

/**
 * Makes `<server>:<export>` available at `mountPath`: nothing to do when something is mounted
 * there already (the Deployment's nfs volume), else `mount -t nfs`, which needs CAP_SYS_ADMIN.
 */
export async function ensureNfsMount(server: string, exportPath: string, mountPath: string): Promise<void> {
  if (await isMountPoint(mountPath)) return;
  await fs.mkdir(mountPath, { recursive: true }).catch(() => undefined);
  try {
    await execFileP('mount', ['-t', 'nfs', '-o', 'nolock,hard', `${server}:${exportPath}`, mountPath]);
  } catch (err) {
    throw new ShareError(
      `could not mount ${server}:${exportPath} at --mount-path ${mountPath} (${((err as { stderr?: string }).stderr || (err as Error).message).trim()}); mount it as an nfs volume or give the controller CAP_SYS_ADMIN`,
    );
  }
}
