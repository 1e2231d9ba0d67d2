// Child process of gc-stress.test.ts, run with --expose-gc on the compiled product (dist/).
// Churns SQLite statements the way vaultik does (the state cache opened, used and closed over
// and over; ad-hoc statements prepared and dropped), in the main thread and in worker threads
// that exit with statements still unfinalized, and forces a collection after each step. The churn
// is large enough for V8 to also collect on its own, from allocation: those collections, not the
// forced ones, ran the finalizers outside a JS context that aborted old builds.
// better-sqlite3 <= 12 on Node >= 24.19 aborts here (SIGABRT in Statement::~Statement when a
// statement is finalized by a GC outside a JS context); a good build prints "ok <counts>".
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const require = createRequire(import.meta.url);
const Database = require('better-sqlite3');
const gc = globalThis.gc;
if (typeof gc !== 'function') throw new Error('run with --expose-gc');

/** Prepares `n` distinct statements on `db` and drops them without finalizing. */
function churn(db, n) {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += db.prepare(`SELECT ? + ${i % 97} AS v`).get(i).v;
  return sum;
}

if (!isMainThread) {
  const db = new Database(join(workerData.dir, `worker-${workerData.n}.db`));
  churn(db, 5_000);
  // Exit with the DB open and its statements unfinalized: the environment's teardown frees them.
  parentPort.postMessage('done');
} else {
  const dist = new URL(process.argv[2]);
  const { StateCache } = await import(new URL('cache/index.js', dist).href);
  const dir = mkdtempSync(join(tmpdir(), 'vaultik-gc-stress-'));
  try {
    let caches = 0;
    for (let i = 0; i < 40; i++) {
      const cache = StateCache.open(join(dir, 'cache.sqlite'), 'local:/gc-stress');
      cache.lookupFile(Buffer.from(`/no/such/file/${i}`));
      cache.close();
      caches++;
      gc();
    }
    const db = new Database(join(dir, 'main.db'));
    for (let round = 0; round < 4; round++) {
      churn(db, 20_000);
      gc();
    }
    db.close();
    gc();
    let workers = 0;
    for (let n = 0; n < 6; n++) {
      const w = new Worker(new URL(import.meta.url), { workerData: { dir, n } });
      await new Promise((resolve, reject) => {
        w.once('error', reject);
        w.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker exited ${code}`))));
      });
      workers++;
      gc();
    }
    console.log(`ok caches=${caches} workers=${workers}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
