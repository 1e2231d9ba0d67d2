// Runs s3rver in its own process (see s3rver.ts). Started with NODE_OPTIONS=--openssl-legacy-provider
// because s3rver encrypts ListObjectsV2 continuation tokens with DES, which Node 20's OpenSSL 3
// only offers through the legacy provider: without it, listings past 1,000 keys fail.
// argv: <directory> <bucket>. Prints one JSON line {"port": N} on stdout once listening.
// Exits when stdin closes (the parent died) or on SIGTERM/SIGINT.
import { createRequire } from 'node:module';
import S3rver from 's3rver';

// s3rver's DeleteObjects deletes its keys in parallel, and each delete then removes its now-empty
// parent directories: two keys in one directory race on that rmdir and the batch fails with a 500
// InternalError. Real S3 has no directories; make the cleanup tolerate the race.
const require = createRequire(import.meta.url);
const FilesystemStore = require('s3rver/lib/stores/filesystem.js');
const deleteObject = FilesystemStore.prototype.deleteObject;
FilesystemStore.prototype.deleteObject = async function tolerantDeleteObject(bucket, key) {
  try {
    await deleteObject.call(this, bucket, key);
  } catch (err) {
    if (err && (err.code === 'ENOENT' || err.code === 'ENOTEMPTY')) return;
    throw err;
  }
};

const [directory, bucket] = process.argv.slice(2);
if (!directory || !bucket) {
  process.stderr.write('usage: s3rver-launcher.mjs <directory> <bucket>\n');
  process.exit(2);
}

const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  directory,
  silent: true,
  // s3rver does not verify SigV4 signatures anyway; it does check the access key id (S3RVER).
  allowMismatchedSignatures: true,
  vhostBuckets: false,
  configureBuckets: [{ name: bucket }],
});

let closing = false;
async function shutdown(code) {
  if (closing) return;
  closing = true;
  const timer = setTimeout(() => process.exit(code), 2000);
  timer.unref();
  try {
    await server.close();
  } catch {
    // not running
  }
  process.exit(code);
}

process.on('SIGTERM', () => void shutdown(0));
process.on('SIGINT', () => void shutdown(0));
process.stdin.on('end', () => void shutdown(0));
process.stdin.on('error', () => void shutdown(0));
process.stdin.resume();

try {
  const address = await server.run();
  process.stdout.write(JSON.stringify({ port: address.port }) + '\n');
} catch (err) {
  process.stderr.write(`s3rver failed to start: ${err && err.stack ? err.stack : String(err)}\n`);
  process.exit(1);
}
