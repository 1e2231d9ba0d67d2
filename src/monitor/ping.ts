/**
 * healthchecks.io-style pings (docs/MONITORING.md "Health-check pings"): `<url>/start` when a
 * run begins, `<url>` when it succeeded, `<url>/fail` when it failed.
 *
 * Contract: a ping never fails a backup. Any problem (no answer within the timeout, a refused
 * connection, a non-2xx status) comes back as a warning message, which names the URL's origin
 * only: the path of a ping URL is what lets anyone ping it.
 */
export type PingKind = 'start' | 'success' | 'fail';

/** The URL a ping of `kind` goes to. */
export function pingUrl(base: string, kind: PingKind): string {
  const url = new URL(base);
  if (kind !== 'success') url.pathname = `${url.pathname.replace(/\/+$/, '')}/${kind}`;
  return url.toString();
}

/**
 * POSTs `body` (a one-line summary, shown in the health-check service's log) to the ping URL.
 * @returns undefined when the service answered 2xx, else a warning message. Never throws.
 */
export async function ping(base: string, kind: PingKind, timeoutMs: number, body = ''): Promise<string | undefined> {
  let origin = 'the health-check URL';
  try {
    const url = pingUrl(base, kind);
    origin = new URL(url).origin;
    const res = await fetch(url, {
      method: 'POST',
      body,
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      signal: AbortSignal.timeout(timeoutMs),
    });
    // Read (and drop) the body so the connection is released.
    await res.arrayBuffer().catch(() => undefined);
    if (res.ok) return undefined;
    return `health-check ping (${kind}) to ${origin} failed: HTTP ${res.status}`;
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const why = e.name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000}s` : (e.cause?.code ?? e.cause?.message ?? e.message);
    return `health-check ping (${kind}) to ${origin} failed: ${why}`;
  }
}
