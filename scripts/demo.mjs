#!/usr/bin/env node
// The README's first command: a real backup and restore on the embedded default.
// Generates a key pair, writes a config for a local-directory store in a temp folder, backs up a
// sample tree, backs it up again (nothing changed: only metadata is added), restores the latest
// snapshot with the private key and shows that the two trees are identical.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist', 'cli', 'bin.js');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vaultik-demo-'));
const source = path.join(work, 'source');
const store = path.join(work, 'store');
// vaultik never creates the store directory itself (a missing one is usually an unmounted disk).
fs.mkdirSync(store);
const target = path.join(work, 'restored');
const keyFile = path.join(work, 'key.txt');

function run(args, env = {}) {
  const shown = args.map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ');
  console.log(`\n$ vaultik ${shown}`);
  const out = execFileSync(process.execPath, [cli, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  return out;
}

function runShow(args, env) {
  try {
    const out = run(args, env);
    if (out.trim()) console.log(out.trimEnd());
  } catch (err) {
    process.stderr.write(String(err.stderr ?? ''));
    throw new Error(`vaultik ${args[0]} failed (exit ${err.status})`);
  }
}

// A sample tree with the kinds of entries a real backup meets.
function makeSampleTree() {
  fs.mkdirSync(path.join(source, 'docs', 'notes'), { recursive: true });
  fs.mkdirSync(path.join(source, 'empty-dir'));
  fs.mkdirSync(path.join(source, 'data'));
  fs.cpSync(path.join(root, 'src'), path.join(source, 'code'), { recursive: true });
  fs.writeFileSync(path.join(source, 'docs', 'hello.txt'), 'hello, vaultik\n');
  fs.writeFileSync(path.join(source, 'docs', 'notes', 'plan.md'), '# plan\n'.repeat(1000));
  fs.writeFileSync(path.join(source, 'data', 'random.bin'), randomBytes(6 * 1024 * 1024));
  fs.writeFileSync(path.join(source, 'data', 'zeros.bin'), Buffer.alloc(3 * 1024 * 1024));
  fs.writeFileSync(path.join(source, 'data', 'empty.txt'), '');
  fs.copyFileSync(path.join(source, 'data', 'random.bin'), path.join(source, 'data', 'random-copy.bin'));
  fs.linkSync(path.join(source, 'docs', 'hello.txt'), path.join(source, 'docs', 'hello-hardlink.txt'));
  fs.symlinkSync('docs/hello.txt', path.join(source, 'link-to-hello'));
  fs.writeFileSync(path.join(source, 'secret.conf'), 'password=hunter2\n', { mode: 0o600 });
  fs.chmodSync(path.join(source, 'secret.conf'), 0o600);
}

// Content, type, mode, size, mtime (µs) and link target of every entry below dir.
function describeTree(dir) {
  const rows = [];
  const walk = (rel) => {
    const abs = path.join(dir, rel);
    for (const name of fs.readdirSync(abs).sort()) {
      const relPath = path.join(rel, name);
      const st = fs.lstatSync(path.join(dir, relPath), { bigint: true });
      let what;
      if (st.isSymbolicLink()) what = `link -> ${fs.readlinkSync(path.join(dir, relPath))}`;
      else if (st.isDirectory()) what = 'dir';
      else what = `file ${st.size} ${createHash('sha256').update(fs.readFileSync(path.join(dir, relPath))).digest('hex')}`;
      // Microseconds: what Linux utimes can set back (nanoseconds are truncated by libuv).
      const mtime = st.isSymbolicLink() ? '' : st.mtimeNs / 1000n;
      rows.push(`${relPath} ${what} ${(st.mode & 0o7777n).toString(8)} ${mtime} nlink=${st.isFile() ? st.nlink : ''}`);
      if (st.isDirectory()) walk(relPath);
    }
  };
  walk('');
  return rows;
}

try {
  console.log(`vaultik demo in ${work}`);
  makeSampleTree();

  // 1. A key pair. Only the public key goes into the config: the source needs no secret.
  const kg = execFileSync(process.execPath, [cli, 'keygen', '-o', keyFile], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  void kg;
  const recipient = fs.readFileSync(keyFile, 'utf8').match(/public key: (age1[0-9a-z]+)/)[1];
  console.log(`\n$ vaultik keygen -o ${keyFile}\nPublic key: ${recipient}`);

  // 2. A config for a local-directory store.
  const config = path.join(work, 'vaultik.yaml');
  fs.writeFileSync(
    config,
    [
      `source_dirs: [${source}]`,
      `exclude: ['*.tmp']`,
      `age_recipient: ${recipient}`,
      `local: {path: ${store}, prefix: demo/}`,
      `index_path: ${path.join(work, 'state', 'index.sqlite')}`,
      `chunk_size: 1MB`,
      `blob_size_limit: 64MB`,
      '',
    ].join('\n'),
  );
  console.log(`\n$ cat ${config}\n${fs.readFileSync(config, 'utf8').trimEnd()}`);

  // 3. Back up twice: the second run finds nothing changed and adds only metadata.
  runShow(['backup', config]);
  runShow(['backup', config]);

  // 4. Restore with the private key, on "another machine": no cache, no config.
  const bucket = `file://${store}`;
  runShow(['snapshots', bucket, 'demo/']);
  runShow(['restore', bucket, 'demo/', 'latest', target], { VAULTIK_PRIVATE_KEY: keyFile });

  // 5. Compare.
  const restoredRoot = path.join(target, source.replace(/^\//, ''));
  const a = describeTree(source);
  const b = describeTree(restoredRoot);
  const diff = a.filter((row, i) => row !== b[i]).concat(b.length > a.length ? b.slice(a.length) : []);
  if (a.length !== b.length || diff.length > 0) {
    console.error('\nDIFFERENT:\n' + diff.slice(0, 20).join('\n'));
    process.exitCode = 1;
  } else {
    console.log(`\nrestored tree is identical to the source: ${a.length} entries (content, type, mode, mtime to the µs, links)`);
    console.log(`store: ${store} (no file names or contents in it: ${fs.readdirSync(path.join(store, 'demo')).join(', ')})`);
  }
} finally {
  if (!process.env.VAULTIK_DEMO_KEEP) fs.rmSync(work, { recursive: true, force: true });
  else console.log(`kept ${work}`);
}
