/**
 * Gives the memory a finished run left behind back to the system before the daemon idles.
 *
 * After a run, the process holds ~50 MiB more than before it (RSS 132-154 MiB idle vs 79 MiB for
 * the CLI just loaded, 20,000 files, Node 22): V8's heap not yet shrunk, and memory glibc's
 * malloc holds as free.
 * The run's buffers, SQLite page caches and native objects were freed, but the pages lie between
 * chunks still in use, and glibc's free() only returns the top of a heap to the kernel.
 * malloc_trim(3) returns every free page of every arena (MADV_DONTNEED); nothing in Node.js calls
 * it, and Node.js has no FFI. SQLite can call a function of a shared library, though: loading an
 * "extension" dlopen()s the library and calls the named entry point. Naming libc and malloc_trim
 * calls `malloc_trim(db)` (the first argument, the connection's address, is malloc_trim's `pad`:
 * it only keeps the top of the main heap, which free() trims anyway; the further arguments are
 * ignored by every Linux ABI). malloc_trim returns 1 when it released memory, which SQLite reports
 * as a failed initialisation; that is the expected outcome. Without glibc (musl, macOS) loading
 * fails and nothing is done.
 *
 * The run's JavaScript garbage still holds native memory (Buffers' backing stores) until V8
 * collects it, ~30-40 s later on its own: a full collection comes first, so the memory is trimmed
 * at once and not a minute later.
 */
import Database from 'better-sqlite3';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** What releaseMemory did with the free memory: returned some, found none, or cannot (not glibc). */
export type TrimResult = 'released' | 'none' | 'unsupported';

type GcFunction = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;
let collect: GcFunction | undefined;

/**
 * V8's most thorough collection, the one it does itself on a low-memory notification: it also
 * compacts and gives the heap's emptied pages back (a plain `gc()` left the heap at 51 MB for
 * 15 MB in use). --expose-gc set at run time exposes `gc` in new contexts only.
 */
function fullGc(): void {
  if (collect === undefined) {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as GcFunction;
  }
  collect({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}

/** Collects the JavaScript garbage, then calls glibc's malloc_trim(3) (above). Never throws. */
export function releaseMemory(): TrimResult {
  fullGc();
  if (process.platform !== 'linux') return 'unsupported';
  let db: Database.Database | undefined;
  try {
    db = new Database(':memory:');
    // better-sqlite3 passes an entry point on to SQLite; its types do not say so.
    (db.loadExtension as (path: string, entryPoint: string) => unknown).call(db, 'libc.so.6', 'malloc_trim');
    return 'none'; // malloc_trim returned 0: no page was free
  } catch (err) {
    return err instanceof Error && err.message.startsWith('error during initialization') ? 'released' : 'unsupported';
  } finally {
    db?.close();
  }
}
