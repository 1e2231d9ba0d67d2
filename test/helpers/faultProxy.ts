/**
 * A fault-injecting HTTP proxy for S3 tests: sits on 127.0.0.1 in front of an S3 server (s3rver),
 * classifies every request by S3 operation, counts traffic, and injects faults on a schedule or by
 * predicate. Also offers a write-only mode that proves a code path needs only write access.
 *
 * API
 *   const proxy = await startFaultProxy(upstreamEndpoint, { writeOnly?: boolean, verify?: IntegrityCheck[] });
 *   proxy.endpoint                       'http://127.0.0.1:<port>': use as the S3 endpoint
 *   proxy.writeOnly = true               403 AccessDenied (S3 XML error) for every operation except
 *                                        PutObject and multipart uploads (WRITE_OPERATIONS)
 *   proxy.verify = INTEGRITY_CHECKS      check what S3 checks on PutObject and UploadPart, which
 *                                        s3rver does not (and radosgw only in part), and answer
 *                                        with S3's error instead of forwarding (fault 'integrity'):
 *         'content-md5'      Content-MD5 → 400 BadDigest (InvalidDigest when malformed)
 *         'checksum-sha256'  x-amz-checksum-sha256 → 400 BadDigest "The SHA256 you specified did
 *                            not match the calculated checksum." (InvalidRequest when malformed)
 *         'payload-sha256'   x-amz-content-sha256 (the signed payload hash, unless
 *                            UNSIGNED-PAYLOAD or STREAMING-*) → 400 XAmzContentSHA256Mismatch
 *                            (checked in this order; one at a time to see what each header buys)
 *   proxy.addFault({ match, fault, skip?, every?, times? })  → remove()
 *       match: an operation, a list of them, or (req) => boolean; omitted = every request.
 *       The fault hits matching requests number skip+1, skip+1+every, ... at most `times` times
 *       (defaults: skip 0, every 1, times unlimited).
 *       fault:
 *         { kind: 'error', status: 503, code: 'SlowDown' }   S3 XML error, nothing forwarded
 *         { kind: 'reset-request', afterBytes? }   read part of the request body (default half),
 *                                                  then reset; the request never reaches the server
 *         { kind: 'reset-response', afterBytes? }  forward, then reset the response after that many
 *                                                  body bytes (default half; 0 = right after the
 *                                                  status line for empty bodies)
 *         { kind: 'delay', ms }                    wait, then forward (slow first byte)
 *         { kind: 'slow-response', chunkBytes, chunkDelayMs }  trickle the response body
 *         { kind: 'hang' }                         never answer (the client must time out)
 *         { kind: 'corrupt-request', offset? }     flip one byte of a PutObject/UploadPart body
 *                                                  (default: the middle one) in transit, before
 *                                                  `verify` and the server see it
 *   proxy.outage(ms, mode?)                 every request for the next ms: 'reset' (default) or 503
 *   proxy.clearFaults()                     removes every rule and ends an outage
 *   proxy.requests                          log: { seq, op, method, path, key, range, headers, status, fault }
 *   proxy.count(op?) / proxy.counts()       requests seen, per operation
 *   proxy.bytesDownloaded                   GetObject response body bytes sent to the client
 *   proxy.bytesUploaded                     PutObject/UploadPart request body bytes received
 *
 * Uploads (PutObject, UploadPart) are buffered and forwarded only once their body is complete:
 * like real S3, and unlike s3rver alone, an upload cut short never leaves a partial object.
 *   proxy.resetStats()                      clears the log and counters (not the faults)
 *   await proxy.close()                     closes the server and every open connection
 *
 * classifyS3Request(method, url) is exported for tests of the classification itself.
 */
import { createHash } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type S3Operation =
  | 'ListBuckets'
  | 'CreateBucket'
  | 'DeleteBucket'
  | 'HeadBucket'
  | 'ListObjects'
  | 'ListObjectsV2'
  | 'ListMultipartUploads'
  | 'DeleteObjects'
  | 'PutObject'
  | 'CopyObject'
  | 'GetObject'
  | 'HeadObject'
  | 'DeleteObject'
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'ListParts'
  | 'Other';

/** What a write-only credential (s3:PutObject, s3:AbortMultipartUpload) may do. */
export const WRITE_OPERATIONS: ReadonlySet<S3Operation> = new Set<S3Operation>([
  'PutObject',
  'CreateMultipartUpload',
  'UploadPart',
  'CompleteMultipartUpload',
  'AbortMultipartUpload',
]);

export type Fault =
  | { kind: 'error'; status: number; code: string; message?: string }
  | { kind: 'reset-request'; afterBytes?: number }
  | { kind: 'reset-response'; afterBytes?: number }
  | { kind: 'delay'; ms: number }
  | { kind: 'slow-response'; chunkBytes: number; chunkDelayMs: number }
  | { kind: 'hang' }
  | { kind: 'corrupt-request'; offset?: number };

/** What S3 verifies of an upload's body against its headers (see proxy.verify). */
export type IntegrityCheck = 'content-md5' | 'checksum-sha256' | 'payload-sha256';
export const INTEGRITY_CHECKS: readonly IntegrityCheck[] = ['content-md5', 'checksum-sha256', 'payload-sha256'];

export interface ProxiedRequest {
  seq: number;
  op: S3Operation;
  method: string;
  /** Path and query as sent by the client. */
  path: string;
  bucket?: string;
  key?: string;
  range?: string;
  headers: IncomingHttpHeaders;
  /** Status sent to the client (undefined when the connection was reset before a response). */
  status?: number;
  fault?: Fault['kind'] | 'write-only' | 'outage' | 'integrity';
}

export interface FaultRule {
  match?: S3Operation | S3Operation[] | ((req: ProxiedRequest) => boolean);
  fault: Fault;
  skip?: number;
  every?: number;
  times?: number;
}

export interface FaultProxy {
  readonly endpoint: string;
  writeOnly: boolean;
  verify: readonly IntegrityCheck[];
  readonly requests: ProxiedRequest[];
  readonly bytesDownloaded: number;
  readonly bytesUploaded: number;
  addFault(rule: FaultRule): () => void;
  outage(ms: number, mode?: 'reset' | '503'): void;
  clearFaults(): void;
  count(op?: S3Operation): number;
  counts(): Partial<Record<S3Operation, number>>;
  resetStats(): void;
  close(): Promise<void>;
}

/** The S3 operation of a path-style request, from its method, path and query. */
export function classifyS3Request(method: string, url: string, headers: IncomingHttpHeaders = {}): { op: S3Operation; bucket?: string; key?: string } {
  const parsed = new URL(url, 'http://proxy.invalid');
  const q = parsed.searchParams;
  const [bucketPart, ...keyParts] = parsed.pathname.replace(/^\//, '').split('/');
  const bucket = bucketPart ? decodeURIComponent(bucketPart) : undefined;
  const key = keyParts.length > 0 && keyParts.join('/') !== '' ? decodeURIComponent(keyParts.join('/')) : undefined;
  const m = method.toUpperCase();
  if (!bucket) return { op: m === 'GET' ? 'ListBuckets' : 'Other' };
  if (key === undefined) {
    const op: S3Operation =
      m === 'GET'
        ? q.get('list-type') === '2'
          ? 'ListObjectsV2'
          : q.has('uploads')
            ? 'ListMultipartUploads'
            : 'ListObjects'
        : m === 'HEAD'
          ? 'HeadBucket'
          : m === 'PUT'
            ? 'CreateBucket'
            : m === 'DELETE'
              ? 'DeleteBucket'
              : m === 'POST' && q.has('delete')
                ? 'DeleteObjects'
                : 'Other';
    return { op, bucket };
  }
  let op: S3Operation = 'Other';
  switch (m) {
    case 'PUT':
      if (q.has('uploadId') && q.has('partNumber')) op = 'UploadPart';
      else if (headers['x-amz-copy-source']) op = 'CopyObject';
      else if ([...q.keys()].length === 0 || q.has('x-id')) op = 'PutObject';
      break;
    case 'POST':
      if (q.has('uploads')) op = 'CreateMultipartUpload';
      else if (q.has('uploadId')) op = 'CompleteMultipartUpload';
      break;
    case 'DELETE':
      op = q.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
      break;
    case 'GET':
      op = q.has('uploadId') ? 'ListParts' : 'GetObject';
      break;
    case 'HEAD':
      op = 'HeadObject';
      break;
  }
  return { op, bucket, key };
}

/** An S3 error answer: status, code, message and the extra elements S3 adds for some codes. */
export interface S3ErrorAnswer {
  status: number;
  code: string;
  message: string;
  extra?: Record<string, string>;
}

function s3ErrorXml(code: string, message: string, resource: string, extra: Record<string, string> = {}): string {
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const more = Object.entries(extra)
    .map(([name, value]) => `<${name}>${esc(value)}</${name}>`)
    .join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${esc(code)}</Code><Message>${esc(message)}</Message>${more}<Resource>${esc(resource)}</Resource><RequestId>FAULTPROXY</RequestId></Error>`;
}

/** Base64 of 16 bytes (an MD5) and of 32 (a SHA-256). */
const MD5_BASE64 = /^[A-Za-z0-9+/]{22}==$/;
const SHA256_BASE64 = /^[A-Za-z0-9+/]{43}=$/;

/**
 * What S3 answers to an upload whose body does not match its integrity headers, for the `checks`
 * asked; undefined when it would accept it. Messages and codes as AWS S3 sends them.
 */
export function integrityError(headers: IncomingHttpHeaders, body: Buffer, checks: readonly IntegrityCheck[]): S3ErrorAnswer | undefined {
  const header = (name: string): string | undefined => {
    const value = headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const digest = (algorithm: string, encoding: 'base64' | 'hex'): string => createHash(algorithm).update(body).digest(encoding);
  const md5 = header('content-md5');
  if (checks.includes('content-md5') && md5 !== undefined) {
    if (!MD5_BASE64.test(md5)) return { status: 400, code: 'InvalidDigest', message: 'The Content-MD5 you specified is not valid.' };
    if (md5 !== digest('md5', 'base64')) {
      return { status: 400, code: 'BadDigest', message: 'The Content-MD5 you specified did not match what we received.', extra: { ExpectedDigest: md5 } };
    }
  }
  const checksum = header('x-amz-checksum-sha256');
  if (checks.includes('checksum-sha256') && checksum !== undefined) {
    if (!SHA256_BASE64.test(checksum)) return { status: 400, code: 'InvalidRequest', message: 'Value for x-amz-checksum-sha256 header is invalid.' };
    if (checksum !== digest('sha256', 'base64')) return { status: 400, code: 'BadDigest', message: 'The SHA256 you specified did not match the calculated checksum.' };
  }
  const payload = header('x-amz-content-sha256');
  if (checks.includes('payload-sha256') && payload !== undefined && payload !== 'UNSIGNED-PAYLOAD' && !payload.startsWith('STREAMING-')) {
    if (!/^[0-9a-f]{64}$/.test(payload)) {
      return { status: 400, code: 'InvalidArgument', message: 'x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD, STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER or a valid sha256 value.' };
    }
    const computed = digest('sha256', 'hex');
    if (payload !== computed) {
      return {
        status: 400,
        code: 'XAmzContentSHA256Mismatch',
        message: "The provided 'x-amz-content-sha256' header does not match what was computed.",
        extra: { ClientComputedContentSHA256: payload, S3ComputedContentSHA256: computed },
      };
    }
  }
  return undefined;
}

/** @throws Error when the port cannot be bound. */
export async function startFaultProxy(upstream: string, options: { writeOnly?: boolean; verify?: readonly IntegrityCheck[] } = {}): Promise<FaultProxy> {
  const target = new URL(upstream);
  const rules: { rule: FaultRule; seen: number; fired: number }[] = [];
  const sockets = new Set<Socket>();
  let outageUntil = 0;
  let outageMode: 'reset' | '503' = 'reset';
  let seq = 0;

  const state = {
    writeOnly: options.writeOnly ?? false,
    verify: options.verify ?? ([] as readonly IntegrityCheck[]),
    requests: [] as ProxiedRequest[],
    bytesDownloaded: 0,
    bytesUploaded: 0,
  };

  const pickFault = (req: ProxiedRequest): Fault | undefined => {
    for (const entry of rules) {
      const { match } = entry.rule;
      const matches =
        match === undefined ||
        (typeof match === 'function' ? match(req) : Array.isArray(match) ? match.includes(req.op) : match === req.op);
      if (!matches) continue;
      entry.seen++;
      const skip = entry.rule.skip ?? 0;
      const every = entry.rule.every ?? 1;
      const times = entry.rule.times ?? Infinity;
      if (entry.seen > skip && (entry.seen - skip - 1) % every === 0 && entry.fired < times) {
        entry.fired++;
        return entry.rule.fault;
      }
    }
    return undefined;
  };

  const sendError = (res: ServerResponse, req: IncomingMessage, record: ProxiedRequest, status: number, code: string, message: string, extra?: Record<string, string>): void => {
    const body = record.method === 'HEAD' ? '' : s3ErrorXml(code, message, record.path, extra);
    record.status = status;
    // Drain the request body so the connection stays usable for the next request.
    req.resume();
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), 'x-amz-request-id': 'FAULTPROXY' });
    res.end(body);
  };

  const forward = (req: IncomingMessage, res: ServerResponse, record: ProxiedRequest, fault: Fault | undefined): void => {
    const headers = { ...req.headers };
    // This proxy has already answered "100 Continue" to the client; the upstream need not.
    delete headers.expect;
    const upstreamReq = httpRequest({
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers,
    });
    upstreamReq.on('error', () => {
      if (!res.headersSent) record.status = 502;
      req.socket.destroy();
    });
    if (record.op === 'PutObject' || record.op === 'UploadPart') {
      // Real S3 stores an upload only once its body is complete; s3rver writes it to the final
      // name as it arrives. Buffering uploads until their last byte gives the pair S3's
      // all-or-nothing semantics, so tests observe the client's behaviour, not s3rver's.
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => {
        state.bytesUploaded += chunk.length;
        chunks.push(chunk);
      });
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        if (fault?.kind === 'corrupt-request' && body.length > 0) {
          const at = Math.min(fault.offset ?? Math.floor(body.length / 2), body.length - 1);
          body[at] = body[at]! ^ 0xff;
        }
        const refused = integrityError(req.headers, body, state.verify);
        if (refused) {
          // Never forwarded: drop the unused upstream request quietly (its error handler would
          // cut the client's connection).
          upstreamReq.removeAllListeners('error');
          upstreamReq.on('error', () => undefined);
          upstreamReq.destroy();
          record.fault = 'integrity';
          sendError(res, req, record, refused.status, refused.code, refused.message, refused.extra);
          return;
        }
        upstreamReq.end(body);
      });
      req.on('close', () => {
        if (!req.complete) upstreamReq.destroy();
      });
    } else {
      req.on('close', () => {
        if (!req.complete) upstreamReq.destroy();
      });
      req.pipe(upstreamReq);
    }
    upstreamReq.on('response', (upstreamRes) => {
      record.status = upstreamRes.statusCode;
      const length = Number(upstreamRes.headers['content-length'] ?? 0);
      const countDown = (n: number): void => {
        if (record.op === 'GetObject') state.bytesDownloaded += n;
      };
      if (fault?.kind === 'reset-response') {
        const after = fault.afterBytes ?? Math.floor(length / 2);
        if (after === 0 && length === 0) {
          upstreamRes.resume();
          upstreamRes.on('end', () => req.socket.destroy());
          return;
        }
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        let sent = 0;
        upstreamRes.on('data', (chunk: Buffer) => {
          if (sent >= after) return;
          const piece = chunk.subarray(0, after - sent);
          sent += piece.length;
          countDown(piece.length);
          res.write(piece);
          if (sent >= after) {
            upstreamRes.destroy();
            // Give the written bytes a moment to leave, then cut the connection mid-body.
            setTimeout(() => req.socket.destroy(), 10);
          }
        });
        upstreamRes.on('end', () => req.socket.destroy());
        return;
      }
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
      if (fault?.kind === 'slow-response') {
        upstreamRes.pause();
        const pending: Buffer[] = [];
        let ended = false;
        let timer: NodeJS.Timeout | undefined;
        const pump = (): void => {
          const chunk = pending.shift();
          if (!chunk) {
            if (ended) res.end();
            else upstreamRes.resume();
            timer = undefined;
            return;
          }
          const piece = chunk.subarray(0, fault.chunkBytes);
          if (chunk.length > piece.length) pending.unshift(chunk.subarray(piece.length));
          countDown(piece.length);
          res.write(piece);
          timer = setTimeout(pump, fault.chunkDelayMs);
        };
        upstreamRes.on('data', (chunk: Buffer) => {
          pending.push(chunk);
          upstreamRes.pause();
          timer ??= setTimeout(pump, fault.chunkDelayMs);
        });
        upstreamRes.on('end', () => {
          ended = true;
          timer ??= setTimeout(pump, 0);
        });
        res.on('close', () => {
          if (timer) clearTimeout(timer);
          upstreamRes.destroy();
        });
        upstreamRes.resume();
        return;
      }
      upstreamRes.on('data', (chunk: Buffer) => countDown(chunk.length));
      upstreamRes.pipe(res);
      res.on('close', () => upstreamRes.destroy());
    });
  };

  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    const { op, bucket, key } = classifyS3Request(req.method ?? 'GET', url, req.headers);
    const record: ProxiedRequest = {
      seq: ++seq,
      op,
      method: req.method ?? 'GET',
      path: url,
      bucket,
      key,
      range: typeof req.headers.range === 'string' ? req.headers.range : undefined,
      headers: req.headers,
    };
    state.requests.push(record);

    if (Date.now() < outageUntil) {
      record.fault = 'outage';
      if (outageMode === '503') sendError(res, req, record, 503, 'ServiceUnavailable', 'Service is unavailable (fault proxy outage)');
      else req.socket.destroy();
      return;
    }
    if (state.writeOnly && !WRITE_OPERATIONS.has(op)) {
      record.fault = 'write-only';
      sendError(res, req, record, 403, 'AccessDenied', 'Access Denied');
      return;
    }
    const fault = pickFault(record);
    record.fault = fault?.kind;
    switch (fault?.kind) {
      case 'error':
        sendError(res, req, record, fault.status, fault.code, fault.message ?? `injected ${fault.code}`);
        return;
      case 'hang':
        req.resume();
        return;
      case 'reset-request': {
        const length = Number(req.headers['content-length'] ?? 0);
        const after = fault.afterBytes ?? Math.floor(length / 2);
        let seen = 0;
        const cut = (): void => {
          req.removeAllListeners('data');
          req.socket.destroy();
        };
        if (after <= 0) {
          cut();
          return;
        }
        req.on('data', (chunk: Buffer) => {
          seen += chunk.length;
          if (seen >= after) cut();
        });
        req.on('end', cut);
        return;
      }
      case 'delay':
        setTimeout(() => {
          if (!req.socket.destroyed) forward(req, res, record, fault);
        }, fault.ms);
        return;
      default:
        forward(req, res, record, fault);
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // A reset connection is the point of this server; client errors are expected.
  server.on('clientError', (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    get writeOnly() {
      return state.writeOnly;
    },
    set writeOnly(value: boolean) {
      state.writeOnly = value;
    },
    get verify() {
      return state.verify;
    },
    set verify(value: readonly IntegrityCheck[]) {
      state.verify = value;
    },
    get requests() {
      return state.requests;
    },
    get bytesDownloaded() {
      return state.bytesDownloaded;
    },
    get bytesUploaded() {
      return state.bytesUploaded;
    },
    addFault(rule) {
      const entry = { rule, seen: 0, fired: 0 };
      rules.push(entry);
      return () => {
        const i = rules.indexOf(entry);
        if (i >= 0) rules.splice(i, 1);
      };
    },
    outage(ms, mode = 'reset') {
      outageUntil = Date.now() + ms;
      outageMode = mode;
    },
    clearFaults() {
      rules.length = 0;
      outageUntil = 0;
    },
    count(op) {
      return op === undefined ? state.requests.length : state.requests.filter((r) => r.op === op).length;
    },
    counts() {
      const out: Partial<Record<S3Operation, number>> = {};
      for (const r of state.requests) out[r.op] = (out[r.op] ?? 0) + 1;
      return out;
    },
    resetStats() {
      state.requests = [];
      state.bytesDownloaded = 0;
      state.bytesUploaded = 0;
    },
    close() {
      return new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      });
    },
  };
}
