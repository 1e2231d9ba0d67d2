/**
 * A real S3 server for tests: s3rver 3.7.1 on 127.0.0.1, random port, fresh temp directory, one
 * bucket, in a child process.
 *
 * API
 *   const s3 = await startS3rver({ bucket?: string });   // bucket defaults to 'vaultik-test'
 *   s3.endpoint            'http://127.0.0.1:<port>'
 *   s3.bucket              the bucket that exists
 *   s3.directory           s3rver's data directory (objects are <dir>/<bucket>/<key>._S3rver_object)
 *   s3.spec(prefix, extra?) an S3StorageSpec for this server (credentials S3RVER/S3RVER, path-style)
 *   s3.incompleteUploads() upload ids s3rver still holds (it cannot abort uploads: see below)
 *   await s3.stop()        stops the server (idempotent) and deletes the directory
 *
 * Why a child process: s3rver encrypts ListObjectsV2 continuation tokens with DES, which Node 20
 * only allows with --openssl-legacy-provider; the flag goes to the child alone, so the test process
 * keeps Node's default crypto policy.
 *
 * s3rver quirks to keep in mind when writing tests (found while writing the storage suite):
 * - Any SigV4 signature is accepted, but the access key id must be 'S3RVER' (others get a real
 *   403 InvalidAccessKeyId, handy for bad-credential tests).
 * - Checksums (Content-MD5, x-amz-checksum-*) and If-None-Match are ignored, not verified.
 * - AbortMultipartUpload answers 405 MethodNotAllowed; aborted uploads stay in incompleteUploads().
 * - Part sizes are not checked (parts under 5 MiB are fine), nor are part ETags at completion.
 * - A PutObject whose request body is cut mid-way leaves a partial object under the final key
 *   (real S3 never does). The fault proxy therefore never forwards a request it resets.
 * - Listing order is the order of its directory walk, which matches S3 key order only for keys
 *   without characters below '/' right after a shared prefix ("a-c" is listed after "a/b").
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { S3StorageSpec } from '../../src/storage/types.js';
import { makeTempDir } from './tmp.js';

export interface S3rverHandle {
  endpoint: string;
  bucket: string;
  directory: string;
  spec(prefix: string, extra?: Partial<S3StorageSpec>): S3StorageSpec;
  incompleteUploads(): string[];
  stop(): Promise<void>;
}

const LAUNCHER = fileURLToPath(new URL('./s3rver-launcher.mjs', import.meta.url));
const STARTUP_TIMEOUT_MS = 15_000;

/** @throws Error with s3rver's stderr when it does not start within 15 s. */
export async function startS3rver(options: { bucket?: string } = {}): Promise<S3rverHandle> {
  const bucket = options.bucket ?? 'vaultik-test';
  const tmp = makeTempDir('vaultik-s3rver-');
  const env = { ...process.env, NODE_OPTIONS: '--openssl-legacy-provider' };
  const child = spawn(process.execPath, [LAUNCHER, tmp.dir, bucket], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });

  let port: number;
  try {
    port = await readPort(child, () => stderr);
    await waitForPort(port);
  } catch (err) {
    await kill(child);
    tmp.cleanup();
    throw err;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  let stopped: Promise<void> | undefined;
  return {
    endpoint,
    bucket,
    directory: tmp.dir,
    spec: (prefix, extra = {}) => ({
      type: 's3',
      bucket,
      prefix,
      endpoint,
      region: 'us-east-1',
      accessKeyId: 'S3RVER',
      secretAccessKey: 'S3RVER',
      forcePathStyle: true,
      ...extra,
    }),
    incompleteUploads: () => {
      try {
        return readdirSync(join(tmp.dir, bucket, '._S3rver_uploads'));
      } catch {
        return [];
      }
    },
    stop: () =>
      (stopped ??= (async () => {
        await kill(child);
        tmp.cleanup();
      })()),
  };
}

function readPort(child: ChildProcess, stderr: () => string): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`s3rver did not start within ${STARTUP_TIMEOUT_MS} ms: ${stderr()}`)), STARTUP_TIMEOUT_MS);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    child.once('exit', (code) => fail(new Error(`s3rver exited with code ${code}: ${stderr()}`)));
    child.once('error', fail);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        clearTimeout(timer);
        try {
          resolve((JSON.parse(line) as { port: number }).port);
        } catch {
          reject(new Error(`unexpected output from the s3rver launcher: ${line}`));
        }
      }
    });
  });
}

/** Resolves once a TCP connection to the port succeeds (the launcher prints before some hosts are ready). */
async function waitForPort(port: number): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`s3rver port ${port} never accepted a connection`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGTERM, then SIGKILL after 3 s; resolves when the child has exited. */
function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.stdin?.end();
    child.kill('SIGTERM');
  });
}
