import { describe, expect, it } from 'vitest';
import { ByteBudget, Semaphore, TaskWindow, WaitQueue } from '../../src/util/concurrency.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A promise settled from outside. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('WaitQueue', () => {
  it('wakes in arrival order, by index, or all; an aborted caller leaves and onLeave runs', async () => {
    const q = new WaitQueue<string>();
    const woke: string[] = [];
    const park = (v: string, signal?: AbortSignal, onLeave?: () => void): Promise<void> => q.wait(v, signal, onLeave).then(() => void woke.push(v));
    const a = park('a');
    const c = new AbortController();
    let left = 0;
    const b = park('b', c.signal, () => left++);
    const d = park('d');
    const e = park('e');
    expect(q.length).toBe(4);
    expect(q.at(1)).toBe('b');
    c.abort(new Error('gone'));
    await expect(b).rejects.toThrow('gone');
    expect(left).toBe(1);
    expect(q.length).toBe(3);
    expect(q.findIndex((v) => v === 'e')).toBe(2);
    expect(q.wake(2)).toBe('e');
    expect(q.wake()).toBe('a');
    await Promise.all([a, e]);
    expect(woke).toEqual(['e', 'a']);
    q.wakeAll();
    await d;
    expect(q.wake()).toBeUndefined();
    await expect(q.wait('x', AbortSignal.abort(new Error('already')))).rejects.toThrow('already');
    expect(q.length).toBe(0);
  });
});

describe('Semaphore', () => {
  it('never lets more than the limit hold a slot, and serves waiters in order', async () => {
    const sem = new Semaphore(2);
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        sem.run(async () => {
          order.push(i);
          running++;
          peak = Math.max(peak, running);
          await tick();
          running--;
        }),
      ),
    );
    expect(peak).toBe(2);
    expect(order).toEqual([...Array(10).keys()]);
    expect(sem.inUse).toBe(0);
  });

  it('a release is idempotent and hands the slot straight to the next waiter', async () => {
    const sem = new Semaphore(1);
    const first = await sem.acquire();
    let second: (() => void) | undefined;
    const waiting = sem.acquire().then((r) => (second = r));
    first();
    first(); // a second call must not free a slot the waiter now holds
    await waiting;
    expect(sem.inUse).toBe(1);
    const third = sem.acquire();
    await tick();
    expect(sem.inUse).toBe(1);
    second!();
    (await third)();
    expect(sem.inUse).toBe(0);
  });

  it('a waiter can give up; run() releases when its function throws; the limit is checked', async () => {
    const sem = new Semaphore(1);
    const release = await sem.acquire();
    const controller = new AbortController();
    const waiting = sem.acquire(controller.signal);
    controller.abort(new Error('stop'));
    await expect(waiting).rejects.toThrow('stop');
    release();
    expect(sem.inUse).toBe(0);
    await expect(sem.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(sem.inUse).toBe(0);
    await expect(sem.acquire(controller.signal)).rejects.toThrow('stop');
    expect(() => new Semaphore(0)).toThrow(RangeError);
    expect(() => new Semaphore(1.5)).toThrow(RangeError);
  });
});

describe('ByteBudget', () => {
  it('grants under the limit, queues beyond it in FIFO order, and lets one oversized request through alone', async () => {
    const b = new ByteBudget(100);
    await b.acquire(60);
    const order: string[] = [];
    const p1 = b.acquire(50).then(() => order.push('a'));
    const p2 = b.acquire(10).then(() => order.push('b'));
    await tick();
    expect(order).toEqual([]); // b fits, but waits behind a (FIFO)
    b.release(60);
    await Promise.all([p1, p2]);
    expect(order).toEqual(['a', 'b']);
    b.release(60);
    expect(b.held).toBe(0);
    await b.acquire(500); // nothing else held: an oversized request still passes
    expect(b.held).toBe(500);
    let next = false;
    const p3 = b.acquire(1).then(() => (next = true));
    await tick();
    expect(next).toBe(false); // ... alone
    b.release(500);
    await p3;
    expect(b.held).toBe(1);
  });

  it('lets the only holder of bytes go ahead of earlier waiters (no deadlock)', async () => {
    const b = new ByteBudget(16);
    // A large file's reader holds 20 bytes of a chunk it is still assembling…
    await b.acquire(20);
    // …a small file waits for room…
    let small = false;
    const p = b.acquire(4).then(() => (small = true));
    await tick();
    expect(small).toBe(false);
    // …and the reader, which alone can free those bytes, must still get more.
    await b.acquire(1, 20);
    expect(b.held).toBe(21);
    b.release(21);
    await p;
    expect(small).toBe(true);
  });

  it('an aborted waiter leaves and lets the waiters behind it in', async () => {
    const b = new ByteBudget(10);
    await b.acquire(6);
    const c = new AbortController();
    const big = b.acquire(8, 0, c.signal);
    let small = false;
    const p = b.acquire(3).then(() => (small = true));
    await tick();
    expect(small).toBe(false); // fits, but waits behind the big one
    c.abort(new Error('stop'));
    await expect(big).rejects.toThrow('stop');
    await p;
    expect(b.held).toBe(9);
    b.release(100); // never below zero
    expect(b.held).toBe(0);
    expect(() => new ByteBudget(0)).toThrow(RangeError);
  });
});

describe('TaskWindow', () => {
  it('keeps at most `limit` tasks running; room() waits for one to settle; start() refuses a full window', async () => {
    const w = new TaskWindow(2);
    const tasks = [deferred(), deferred(), deferred()];
    await w.add(() => tasks[0]!.promise);
    await w.add(() => tasks[1]!.promise);
    expect(w.size).toBe(2);
    expect(() => w.start(tasks[2]!.promise)).toThrow(RangeError);
    let roomy = false;
    const room = w.room().then(() => (roomy = true));
    await tick();
    expect(roomy).toBe(false);
    tasks[1]!.resolve();
    await room;
    expect(w.size).toBe(1);
    w.start(tasks[2]!.promise);
    let drained = false;
    const drain = w.drain().then(() => (drained = true));
    tasks[0]!.resolve();
    await tick();
    expect(drained).toBe(false);
    tasks[2]!.resolve();
    await drain;
    expect(w.size).toBe(0);
  });

  it('remembers the first failure: onFailure hears it once, room() and drain() throw it, the rest still settle', async () => {
    const heard: unknown[] = [];
    const w = new TaskWindow(3, (err) => heard.push(err));
    const slow = deferred();
    let slowDone = false;
    w.start(slow.promise.then(() => (slowDone = true)));
    w.start(Promise.reject(new Error('first')));
    w.start(Promise.reject(new Error('second')));
    await tick();
    expect(heard.map((e) => (e as Error).message)).toEqual(['first']);
    expect(() => w.throwIfFailed()).toThrow('first');
    await expect(w.room()).rejects.toThrow('first');
    await expect(w.add(() => Promise.resolve())).rejects.toThrow('first');
    const drained = w.drain();
    await tick();
    expect(slowDone).toBe(false); // drain waits for every task, failed or not
    slow.resolve();
    await expect(drained).rejects.toThrow('first');
    expect(slowDone).toBe(true);
    await w.settle(); // never throws
  });

  it('a failed task nobody awaits is not an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown): void => void unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      const w = new TaskWindow(1);
      w.start(Promise.reject(new Error('lost')));
      await w.settle();
      await new Promise((r) => setTimeout(r, 10));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
  });

  it('room() gives up when its signal is aborted; the limit is checked', async () => {
    const w = new TaskWindow(1);
    const task = deferred();
    w.start(task.promise);
    const c = new AbortController();
    const room = w.room(c.signal);
    c.abort(new Error('stop'));
    await expect(room).rejects.toThrow('stop');
    await expect(w.add(() => Promise.resolve(), c.signal)).rejects.toThrow('stop');
    task.resolve();
    await w.drain();
    expect(() => new TaskWindow(0)).toThrow(RangeError);
  });
});
