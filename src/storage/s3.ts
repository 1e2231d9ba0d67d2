/**
 * The S3 store, on the AWS SDK v3. Runs against AWS S3 and S3-compatible servers (MinIO, Backblaze
 * B2, Cloudflare R2, Wasabi, Ceph RGW); tested here against s3rver and Ceph radosgw.
 *
 * Contract (beyond Storage):
 * - put issues only PutObject, or CreateMultipartUpload / UploadPart / CompleteMultipartUpload
 *   (and AbortMultipartUpload on failure): never HeadObject, GetObject, ListObjects or
 *   DeleteObject, so backup works with a write-only credential.
 * - PutObject and CompleteMultipartUpload send If-None-Match: * (unless conditional_writes is
 *   false): keys are content hashes, so a 412 means the object is there and the put succeeds.
 * - A single PutObject sends Content-Length and an integrity checksum: x-amz-checksum-sha256 when
 *   the caller gives the SHA-256, otherwise Content-MD5 (a stream body is then read twice: once to
 *   hash it, once to send it; callers should pass sha256). Every UploadPart sends Content-MD5 of
 *   its part, and the caller's SHA-256 is checked over the parts before the upload is completed.
 *   The server rejects bytes that do not match, so a put lands whole or not at all.
 * - Bodies larger than `multipartThreshold` go up as a multipart upload with `concurrency` parts
 *   in flight. Parts are buffered in memory ((concurrency + 1) × partSize at most) so a part that
 *   fails transiently is re-sent from memory without restarting the upload. If the upload fails
 *   for good it is aborted (after every in-flight part has settled, so no part lands after the
 *   abort); a failed abort is reported in the error message and left to the bucket's lifecycle
 *   rule (docs/S3.md).
 * - Ranged GetObject always sends an explicit `bytes=first-last` range, never a suffix range.
 * - The SDK's own retries are off (maxAttempts 1): the RetryStorage wrapper is the single retry
 *   policy, and it knows which errors are worth retrying. Automatic request checksums are
 *   'WHEN_REQUIRED' because several S3-compatible servers reject the SDK's default CRC32 trailers
 *   (aws-chunked encoding); DeleteObjects gets a Content-MD5 instead of CRC32 for the same reason.
 * - delete deletes by version id in a versioned bucket (see delete), so nothing is merely hidden.
 * - Errors are StorageErrors whose messages name the bucket, the key and the fix.
 */
import { createHash } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  ListObjectVersionsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
  type DeleteObjectsCommandOutput,
  type ObjectIdentifier,
  type PutObjectCommandInput,
} from '@aws-sdk/client-s3';
import { checkKey, normalizePrefix } from './keys.js';
import { S3_DEFAULTS, checkS3Spec, type S3StorageOptions, type SdkLogger } from './s3Settings.js';
import { checkRange } from './local.js';
import { withRetry, type RetryOptions } from './retry.js';
import { BodyLengthError, bodySize, emptyStream, guardDownload, lengthChecker, openBody } from './streams.js';
import { TaskWindow } from '../util/concurrency.js';
import {
  DeleteRefusedError,
  StorageError,
  type ByteRange,
  type ObjectInfo,
  type PutBody,
  type PutOptions,
  type S3StorageSpec,
  type Storage,
  type StorageErrorKind,
} from './types.js';

/** S3 allows at most 10,000 parts per upload. */
const MAX_PARTS = 10_000;
/** DeleteObjects takes at most 1,000 keys per request. */
const DELETE_BATCH = 1000;

export { S3_DEFAULTS, type S3StorageOptions, type SdkLogger };

const SILENT_LOGGER: SdkLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

type Op = 'put' | 'get' | 'stat' | 'list' | 'versions' | 'delete' | 'abort';

/** What the user is told to check, per operation, when access is denied. */
const PERMISSION: Record<Op, { verb: string; action: string }> = {
  put: { verb: 'writing', action: 's3:PutObject' },
  get: { verb: 'reading', action: 's3:GetObject' },
  stat: { verb: 'reading', action: 's3:GetObject' },
  list: { verb: 'listing', action: 's3:ListBucket' },
  versions: { verb: 'listing the versions of', action: 's3:ListBucketVersions' },
  delete: { verb: 'deleting', action: 's3:DeleteObject (and s3:DeleteObjectVersion in a versioned bucket)' },
  abort: { verb: 'aborting the upload of', action: 's3:AbortMultipartUpload' },
};

export class S3Storage implements Storage {
  readonly description: string;
  readonly bucket: string;
  readonly prefix: string;
  /** Endpoint as shown in messages. */
  readonly endpointName: string;
  readonly client: S3Client;
  private readonly threshold: number;
  private readonly partSize: number;
  private readonly partConcurrency: number;
  private readonly partRetry: RetryOptions;
  private bucketKnownToExist = false;
  /** The bucket keeps versions: delete() deletes them by id (known from object_lock, or learnt). */
  private versioned: boolean;
  /** Puts carry If-None-Match: * (off once a server refused it under 'auto'). */
  private conditional: boolean;
  private readonly warn: (message: string) => void;

  /** @throws StorageError 'permanent' for an invalid prefix or part settings. */
  constructor(
    private readonly spec: S3StorageSpec,
    options: S3StorageOptions = {},
  ) {
    this.bucket = spec.bucket;
    this.prefix = normalizePrefix(spec.prefix);
    this.description = `s3://${spec.bucket}/${this.prefix}`;
    const region = spec.region ?? 'us-east-1';
    this.endpointName = spec.endpoint ?? `https://s3.${region}.amazonaws.com`;
    this.threshold = spec.multipartThreshold ?? S3_DEFAULTS.multipartThreshold;
    this.partSize = spec.partSize ?? S3_DEFAULTS.partSize;
    this.partConcurrency = spec.concurrency ?? S3_DEFAULTS.concurrency;
    checkS3Spec(spec, options);
    this.partRetry = options.partRetry ?? { maxAttempts: 4, maxElapsedMs: 60_000 };
    this.conditional = spec.conditionalWrites !== false;
    this.versioned = spec.objectLock !== undefined;
    this.warn = options.warn ?? ((message) => process.stderr.write(`vaultik: warning: ${message}\n`));
    const maxSockets = options.maxSockets ?? S3_DEFAULTS.maxSockets;
    this.client = new S3Client({
      region,
      endpoint: spec.endpoint,
      forcePathStyle: spec.forcePathStyle ?? spec.endpoint !== undefined,
      credentials:
        spec.accessKeyId !== undefined && spec.secretAccessKey !== undefined
          ? { accessKeyId: spec.accessKeyId, secretAccessKey: spec.secretAccessKey, sessionToken: spec.sessionToken }
          : undefined,
      maxAttempts: 1,
      // Without a logger the SDK warns on the console ("An error was encountered in a
      // non-retryable streaming request") whenever a stream upload fails: noise on stderr that
      // would break `backup --cron`'s silence. Failures reach the caller as StorageErrors instead.
      logger: options.sdkLogger ?? SILENT_LOGGER,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: options.connectionTimeoutMs ?? S3_DEFAULTS.connectionTimeoutMs,
        socketTimeout: options.socketTimeoutMs ?? S3_DEFAULTS.socketTimeoutMs,
        httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
        httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
      },
    });
    // DeleteObjects requires an integrity header. The SDK sends CRC32, which MinIO before 2024,
    // B2 and others refuse ("Missing required header: Content-MD5"); Content-MD5 works everywhere.
    // 'build'/'low' runs after the SDK's checksum middleware and before signing.
    this.client.middlewareStack.add(
      (next, context) => async (args) => {
        const request = args.request as { headers?: Record<string, string>; body?: unknown };
        if (context.commandName === 'DeleteObjectsCommand' && request.headers && (typeof request.body === 'string' || request.body instanceof Uint8Array)) {
          const kept = Object.entries(request.headers).filter(([name]) => {
            const lower = name.toLowerCase();
            return !lower.startsWith('x-amz-checksum-') && lower !== 'x-amz-sdk-checksum-algorithm';
          });
          request.headers = { ...Object.fromEntries(kept), 'content-md5': createHash('md5').update(request.body).digest('base64') };
        }
        return next(args);
      },
      { step: 'build', priority: 'low', name: 'vaultikDeleteObjectsContentMd5' },
    );
    // The SigV4 signer hashes every in-memory body with SHA-256 to sign it. For a PutObject whose
    // SHA-256 the caller gave, that hash is already known; an UploadPart carries Content-MD5 for
    // integrity. Telling the signer saves a full SHA-256 pass over every byte uploaded.
    this.client.middlewareStack.add(
      (next, context) => async (args) => {
        const request = args.request as { headers?: Record<string, string> };
        const input = args.input as { ChecksumSHA256?: string };
        if (request.headers) {
          if (context.commandName === 'PutObjectCommand' && input.ChecksumSHA256) {
            request.headers['x-amz-content-sha256'] = Buffer.from(input.ChecksumSHA256, 'base64').toString('hex');
          } else if (context.commandName === 'UploadPartCommand') {
            request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
          }
        }
        return next(args);
      },
      { step: 'build', priority: 'low', name: 'vaultikKnownPayloadHash' },
    );
  }

  private location(key: string): string {
    return `${this.description}${key}`;
  }

  /**
   * Uploads the object: one PutObject up to the multipart threshold, a multipart upload above it.
   * @throws StorageError: 'permission' (write access denied, bad credentials), 'permanent'
   *   (missing bucket, body length or checksum mismatch), 'transient' (network, 5xx, throttling).
   *   Errors from reading a stream body are rethrown as they are.
   */
  async put(key: string, body: PutBody, options?: PutOptions): Promise<void> {
    checkKey(key);
    const size = bodySize(body);
    if (size > this.threshold) {
      await this.putMultipart(key, body, size, options);
      return;
    }
    const input: PutObjectCommandInput = {
      Bucket: this.bucket,
      Key: this.prefix + key,
      ContentLength: size,
      ContentType: 'application/octet-stream',
      IfNoneMatch: this.conditional ? '*' : undefined,
      ...this.lockHeaders(),
    };
    if (options?.sha256) {
      input.ChecksumSHA256 = options.sha256.toString('base64');
    } else {
      input.ContentMD5 = await md5Of(body, size, (err) => this.bodyError(err, key));
    }
    const controller = linkedController(options?.signal);
    let bodyFailure: unknown;
    let streams: Readable[] = [];
    if (Buffer.isBuffer(body)) {
      input.Body = body;
    } else {
      // The SDK pipes the body into the request without watching it for errors: a failing or
      // short source would leave the request hanging. Watch it here and abort the request.
      const source = openBody(body);
      const checked = lengthChecker(size);
      const fail = (err: unknown): void => {
        bodyFailure ??= err;
        controller.abort(err);
      };
      source.on('error', (err) => {
        fail(err);
        checked.destroy(err);
      });
      checked.on('error', fail);
      input.Body = source.pipe(checked);
      streams = [source, checked];
    }
    let again = false;
    try {
      await this.client.send(new PutObjectCommand(input), { abortSignal: controller.signal });
    } catch (err) {
      if (bodyFailure !== undefined) throw this.bodyError(bodyFailure, key);
      // Keys are content hashes: an object already under this key holds these bytes (often our
      // own, from an attempt whose answer was lost).
      if (preconditionFailed(err)) return;
      again = this.conditionalRefused(err, key);
      if (!again) throw this.classify(err, 'put', key);
    } finally {
      controller.dispose();
      // After a failure (or an early 4xx answer to Expect: 100-continue) the body may be unread:
      // release its file descriptor now.
      for (const s of streams) s.destroy();
    }
    if (again) await this.put(key, body, options);
  }

  /**
   * Whether `err` is a server refusing If-None-Match (501 NotImplemented) and the put should be
   * sent again without it: under 'auto' conditional writes are then off for this store, with one
   * warning. @throws StorageError 'permanent' when conditional_writes is true.
   */
  private conditionalRefused(err: unknown, key: string): boolean {
    if (!this.conditional || (errorName(err) !== 'NotImplemented' && httpStatus(err) !== 501)) return false;
    if (this.spec.conditionalWrites === true) {
      throw new StorageError(
        `${this.endpointName} does not support conditional writes (If-None-Match), required by conditional_writes: true (writing ${this.location(key)}): set conditional_writes: auto or false in the s3: block`,
        'permanent',
        key,
        { cause: err },
      );
    }
    this.conditional = false;
    this.warn(
      `${this.endpointName} does not support conditional writes (If-None-Match: *), so it cannot refuse to replace an existing object; uploading without them (set conditional_writes: false in the s3: block to silence this, or true to make it an error)`,
    );
    return true;
  }

  private lockHeaders(): Pick<PutObjectCommandInput, 'ObjectLockMode' | 'ObjectLockRetainUntilDate'> {
    const lock = this.spec.objectLock;
    if (!lock) return {};
    return {
      ObjectLockMode: lock.mode === 'compliance' ? 'COMPLIANCE' : 'GOVERNANCE',
      ObjectLockRetainUntilDate: new Date(Date.now() + lock.days * 86_400_000),
    };
  }

  /** A failure of the caller's body: length mismatches are permanent, read errors pass through. */
  private bodyError(err: unknown, key: string): Error {
    if (err instanceof BodyLengthError) {
      return new StorageError(`cannot upload ${this.location(key)}: ${err.message}`, 'permanent', key, { cause: err });
    }
    return err instanceof Error ? err : new Error(String(err));
  }

  private async putMultipart(key: string, body: PutBody, size: number, options?: PutOptions): Promise<void> {
    // Grow parts for huge objects so they fit in 10,000 parts.
    const partSize = Math.max(this.partSize, Math.ceil(size / MAX_PARTS));
    const objectKey = this.prefix + key;
    let uploadId: string | undefined;
    try {
      const created = await this.client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key: objectKey,
          ContentType: 'application/octet-stream',
          ...this.lockHeaders(),
        }),
        { abortSignal: options?.signal },
      );
      uploadId = created.UploadId;
    } catch (err) {
      throw this.classify(err, 'put', key);
    }
    if (!uploadId) throw new StorageError(`${this.endpointName} started a multipart upload of ${this.location(key)} without an upload id`, 'transient', key);

    const controller = linkedController(options?.signal);
    const completed: CompletedPart[] = [];
    let failure: unknown;
    const inFlight = new TaskWindow(this.partConcurrency, (err) => {
      failure = err;
      controller.abort(err);
    });
    const source = openBody(body);
    // The read loop below waits on the source; an abort (the caller's, or a failed part's) must
    // wake it up even when the source is stalled.
    controller.signal.addEventListener('abort', () => source.destroy(), { once: true });
    // Parts carry their own Content-MD5; the caller's SHA-256 of the whole object is checked here
    // before completing, so a multipart put gives the same guarantee as a single one.
    const wholeHash = options?.sha256 ? createHash('sha256') : undefined;
    try {
      let partNumber = 0;
      for await (const part of readParts(source, partSize, size)) {
        inFlight.throwIfFailed();
        wholeHash?.update(part);
        const number = ++partNumber;
        inFlight.start(
          this.uploadPart(objectKey, key, uploadId, number, part, controller.signal).then((etag) => {
            completed.push({ PartNumber: number, ETag: etag });
          }),
        );
        // Waits here, not before start(): the next part is read only once there is room for it.
        await inFlight.room();
      }
      await inFlight.drain();
      if (wholeHash && options?.sha256 && !wholeHash.digest().equals(options.sha256)) {
        throw new StorageError(`refusing to complete the upload of ${this.location(key)}: its bytes do not match the SHA-256 given by the caller`, 'permanent', key);
      }
      completed.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
      for (;;) {
        try {
          // Some servers (radosgw) answer an empty ETag here: nothing reads the answer.
          await this.client.send(
            new CompleteMultipartUploadCommand({
              Bucket: this.bucket,
              Key: objectKey,
              UploadId: uploadId,
              MultipartUpload: { Parts: completed },
              IfNoneMatch: this.conditional ? '*' : undefined,
            }),
            { abortSignal: options?.signal },
          );
          break;
        } catch (err) {
          if (preconditionFailed(err)) {
            // The object exists (see put); drop our parts.
            const problem = await this.abortUpload(objectKey, key, uploadId);
            if (problem) this.warn(`${this.location(key)} already exists, but ${problem}`);
            return;
          }
          if (!this.conditionalRefused(err, key)) throw this.classify(err, 'put', key);
        }
      }
    } catch (caught) {
      // When a part failed or the caller aborted, the read loop died of the source's destruction;
      // report the reason, not the symptom.
      const err: unknown = failure ?? (options?.signal?.aborted ? options.signal.reason : caught);
      controller.abort(err);
      source.destroy();
      // Parts still in flight could land after an abort and keep the upload alive: wait first.
      await inFlight.settle();
      const error = err instanceof BodyLengthError ? this.bodyError(err, key) : err;
      const abortProblem = await this.abortUpload(objectKey, key, uploadId);
      if (abortProblem && error instanceof StorageError) {
        throw new StorageError(`${error.message} (${abortProblem})`, error.kind, key, { cause: error });
      }
      throw error;
    } finally {
      controller.dispose();
    }
  }

  /** Uploads one part from memory, retrying transient failures; returns its ETag. */
  private async uploadPart(objectKey: string, key: string, uploadId: string, partNumber: number, part: Buffer, signal: AbortSignal): Promise<string> {
    const md5 = createHash('md5').update(part).digest('base64');
    return withRetry(
      async () => {
        try {
          const out = await this.client.send(
            new UploadPartCommand({
              Bucket: this.bucket,
              Key: objectKey,
              UploadId: uploadId,
              PartNumber: partNumber,
              Body: part,
              ContentLength: part.length,
              ContentMD5: md5,
            }),
            { abortSignal: signal },
          );
          if (!out.ETag) throw new StorageError(`${this.endpointName} returned no ETag for part ${partNumber} of ${this.location(key)}`, 'transient', key);
          return out.ETag;
        } catch (err) {
          throw this.classify(err, 'put', key);
        }
      },
      this.partRetry,
      { op: 'part', key, signal },
    );
  }

  /** Aborts a multipart upload; returns a note for the user when that failed, else undefined. */
  private async abortUpload(objectKey: string, key: string, uploadId: string): Promise<string | undefined> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId }));
      return undefined;
    } catch (err) {
      const status = httpStatus(err);
      // 404: already gone. 405: s3rver does not implement AbortMultipartUpload.
      if (status === 404 || status === 405) return undefined;
      const reason = this.classify(err, 'abort', key);
      return `the incomplete upload ${uploadId} could not be aborted: ${reason.message}; the bucket's lifecycle rule for incomplete multipart uploads will remove it`;
    }
  }

  /** @throws StorageError 'not-found'; 'permanent' for a range past the end; see put for others. */
  async get(key: string, range?: ByteRange, options?: { signal?: AbortSignal }): Promise<Readable> {
    checkKey(key);
    checkRange(range);
    if (range?.length === 0) return emptyStream();
    let response;
    try {
      response = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.prefix + key,
          // Always an explicit first-last range: suffix ranges ("bytes=-N") are mishandled by
          // some servers (s3rver), and we always know where we want to read.
          Range: range ? `bytes=${range.offset}-${range.offset + range.length - 1}` : undefined,
        }),
        { abortSignal: options?.signal },
      );
    } catch (err) {
      throw this.classify(err, 'get', key);
    }
    const body = response.Body as Readable | undefined;
    let expected = response.ContentLength;
    let dropExcess = false;
    if (range) {
      const served = parseContentRange(response.ContentRange);
      const wantedEnd = range.offset + range.length - 1;
      // A server may serve more than asked (s3rver answers "bytes=0-0" with the whole object):
      // accept a range that starts where we asked and covers it, and keep only our bytes.
      dropExcess = served !== undefined && served.first === range.offset && served.last > wantedEnd;
      if (!served || served.first !== range.offset || served.last < wantedEnd) {
        body?.destroy();
        if (served && served.first === range.offset && served.size !== undefined && served.last < wantedEnd) {
          throw new StorageError(
            `range ${range.offset}+${range.length} reaches past the end of ${this.location(key)} (${served.size} bytes)`,
            'permanent',
            key,
          );
        }
        throw new StorageError(
          `${this.endpointName} answered a request for bytes ${range.offset}-${wantedEnd} of ${this.location(key)} with '${response.ContentRange ?? 'the whole object'}'`,
          'permanent',
          key,
        );
      }
      expected = range.length;
    }
    if (!body) return emptyStream();
    return guardDownload(body, expected, (err) => this.classify(err, 'get', key), { dropExcess });
  }

  /** @throws StorageError 'not-found' for a missing object; 'permanent' for a missing bucket. */
  async stat(key: string): Promise<ObjectInfo> {
    checkKey(key);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
      this.bucketKnownToExist = true;
      return { key, size: head.ContentLength ?? 0, lastModified: head.LastModified ?? new Date(0) };
    } catch (err) {
      const error = this.classify(err, 'stat', key);
      // HEAD responses have no body, so a missing bucket looks like a missing key: ask once.
      if (error instanceof StorageError && error.kind === 'not-found' && !this.bucketKnownToExist) {
        await this.checkBucket();
      }
      throw error;
    }
  }

  private async checkBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      this.bucketKnownToExist = true;
    } catch (err) {
      if (httpStatus(err) === 404) throw this.noSuchBucket(err);
      // Anything else (403 without s3:ListBucket): we cannot tell; report the key as missing.
    }
  }

  /** Lists with ListObjectsV2, 1,000 keys per page, lazily. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token, MaxKeys: 1000 }),
        );
      } catch (err) {
        throw this.classify(err, 'list', prefix);
      }
      this.bucketKnownToExist = true;
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined || !object.Key.startsWith(this.prefix + prefix)) continue;
        yield { key: object.Key.slice(this.prefix.length), size: object.Size ?? 0, lastModified: object.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (page.IsTruncated && !token) {
        throw new StorageError(`${this.endpointName} returned a truncated listing of ${this.location(prefix)} without a continuation token`, 'permanent', prefix);
      }
    } while (token);
  }

  /**
   * DeleteObjects in batches of 1,000; missing keys are fine. In a versioned bucket (Object Lock
   * buckets always are) a delete without version ids only hides an object behind a delete
   * marker, even a locked one: so there every version of the key is deleted by id instead. A
   * version the server refuses to delete (retention, legal hold) keeps its key listed: the
   * markers go, and DeleteRefusedError names the keys once the batch is done.
   */
  async delete(keys: string[]): Promise<void> {
    for (const key of keys) checkKey(key);
    const refused: string[] = [];
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      if (this.versioned) {
        refused.push(...(await this.deleteVersions(batch)));
        continue;
      }
      const result = await this.deleteObjects(batch.map((k) => ({ Key: this.prefix + k })), false);
      const hidden = (result.Deleted ?? []).filter((d) => d.DeleteMarker && d.Key !== undefined).map((d) => d.Key!.slice(this.prefix.length));
      if (hidden.length > 0) {
        // The answer told us the bucket keeps versions: from now on, delete them by id.
        this.versioned = true;
        refused.push(...(await this.deleteVersions(hidden)));
      }
    }
    if (refused.length > 0) {
      throw new DeleteRefusedError(
        `${this.endpointName} refused to delete ${refused.length} object(s) under ${this.description} (first: ${refused[0]}): Object Lock retention or a legal hold keeps them until it ends; they stay in the store and in listings`,
        refused,
      );
    }
  }

  /**
   * Deletes every version and delete marker of `keys` by id. @returns the keys with a version
   * the server refused to delete (AccessDenied: locked).
   */
  private async deleteVersions(keys: string[]): Promise<string[]> {
    const targets: ObjectIdentifier[] = [];
    const window = new TaskWindow(16);
    for (const key of keys) {
      await window.add(async () => {
        targets.push(...(await this.versionsOf(key)));
      });
    }
    await window.drain();
    const refused = new Set<string>();
    for (let i = 0; i < targets.length; i += DELETE_BATCH) {
      const result = await this.deleteObjects(targets.slice(i, i + DELETE_BATCH), true);
      for (const e of result.Errors ?? []) refused.add((e.Key ?? '').slice(this.prefix.length));
    }
    return [...refused];
  }

  /** The version ids (objects and delete markers) of exactly `key`. */
  private async versionsOf(key: string): Promise<ObjectIdentifier[]> {
    const out: ObjectIdentifier[] = [];
    const objectKey = this.prefix + key;
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: objectKey, KeyMarker: keyMarker, VersionIdMarker: versionMarker }),
        );
      } catch (err) {
        throw this.classify(err, 'versions', key);
      }
      for (const v of [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])]) {
        if (v.Key === objectKey && v.VersionId !== undefined) out.push({ Key: objectKey, VersionId: v.VersionId });
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      versionMarker = page.NextVersionIdMarker;
    } while (keyMarker);
    return out;
  }

  /**
   * One DeleteObjects request. `versions`: AccessDenied per entry is a refusal returned to the
   * caller, not an error (see delete). @throws StorageError for any other failed entry.
   */
  private async deleteObjects(objects: ObjectIdentifier[], versions: boolean): Promise<DeleteObjectsCommandOutput> {
    const firstKey = (objects[0]?.Key ?? this.prefix).slice(this.prefix.length);
    let result;
    try {
      // Not Quiet: the answer says whether a delete marker was made (a versioned bucket).
      result = await this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: objects, Quiet: versions } }));
    } catch (err) {
      throw this.classify(err, 'delete', firstKey);
    }
    const failed = (result.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey' && !(versions && e.Code === 'AccessDenied'));
    const first = failed[0];
    if (first) {
      const key = (first.Key ?? '').slice(this.prefix.length);
      const synthetic = Object.assign(new Error(first.Message ?? first.Code ?? 'delete failed'), {
        name: first.Code ?? 'Unknown',
        $metadata: { httpStatusCode: statusForCode(first.Code) },
      });
      const error = this.classify(synthetic, 'delete', key);
      throw new StorageError(`${error.message} (${failed.length} of ${objects.length} keys in the batch failed)`, error instanceof StorageError ? error.kind : 'permanent', key, {
        cause: error,
      });
    }
    return { ...result, Errors: (result.Errors ?? []).filter((e) => e.Code === 'AccessDenied') };
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private noSuchBucket(err: unknown): StorageError {
    return new StorageError(
      `bucket '${this.bucket}' does not exist at ${this.endpointName}: create it, or check the bucket name and the endpoint`,
      'permanent',
      undefined,
      { cause: err },
    );
  }

  /**
   * Turns an SDK or network error into a StorageError users can act on. Aborts by the caller are
   * passed through unchanged (they are not failures of the store).
   */
  classify(err: unknown, op: Op, key: string): Error {
    if (err instanceof StorageError) return err;
    const name = errorName(err);
    if (name === 'AbortError') return err as Error;
    const status = httpStatus(err);
    const detail = err instanceof Error ? err.message : String(err);
    const where = this.location(key);
    const { verb, action } = PERMISSION[op];
    const make = (kind: StorageErrorKind, message: string): StorageError => new StorageError(message, kind, key, { cause: err });
    const code = errnoCode(err);

    switch (code) {
      case 'ENOTFOUND':
        return make('permanent', `cannot resolve the host of ${this.endpointName}: check the endpoint URL`);
      case 'ECONNREFUSED':
      case 'ECONNRESET':
      case 'EPIPE':
      case 'ETIMEDOUT':
      case 'ECONNABORTED':
      case 'EHOSTUNREACH':
      case 'ENETUNREACH':
      case 'ENETDOWN':
      case 'EAI_AGAIN':
      case 'ERR_STREAM_PREMATURE_CLOSE':
        return make('transient', `cannot reach ${this.endpointName} (${verb} ${where}): ${detail}`);
    }
    if (name === 'CredentialsProviderError' || /Could not load credentials/i.test(detail)) {
      return make(
        'permission',
        `no S3 credentials found for ${this.description}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or access_key_id/secret_access_key in the config`,
      );
    }
    switch (name) {
      case 'NoSuchBucket':
        return this.noSuchBucket(err);
      case 'NoSuchKey':
      case 'NotFound':
        return make('not-found', `object ${where} does not exist`);
      case 'InvalidAccessKeyId':
        return make('permission', `the access key id is not known to ${this.endpointName} (${verb} ${where}): check AWS_ACCESS_KEY_ID or access_key_id`);
      case 'SignatureDoesNotMatch':
        return make('permission', `the secret access key is wrong for ${this.endpointName} (${verb} ${where}): check AWS_SECRET_ACCESS_KEY or secret_access_key`);
      case 'ExpiredToken':
      case 'TokenRefreshRequired':
      case 'InvalidToken':
        return make('permission', `the S3 session token is expired or invalid (${verb} ${where}): renew AWS_SESSION_TOKEN`);
      case 'RequestTimeTooSkewed':
        return make('permanent', `this machine's clock is too far from ${this.endpointName}'s (${verb} ${where}): synchronise it (NTP)`);
      case 'PermanentRedirect':
      case 'AuthorizationHeaderMalformed':
      case 'IllegalLocationConstraintException':
        return make('permanent', `bucket '${this.bucket}' is not in region '${this.spec.region ?? 'us-east-1'}' at ${this.endpointName}: set AWS_REGION or region to the bucket's region`);
      case 'InvalidRange':
        return make('permanent', `the requested range is past the end of ${where}`);
      case 'BadDigest':
      case 'InvalidDigest':
      case 'XAmzContentSHA256Mismatch':
        return make('permanent', `${this.endpointName} rejected ${where}: the bytes sent do not match their checksum (${detail})`);
      case 'EntityTooSmall':
        return make('permanent', `${this.endpointName} rejected a multipart upload of ${where}: parts must be at least 5 MiB (part_size)`);
      case 'NoSuchUpload':
      case 'ConditionalRequestConflict': // a conditional write raced another to the key (AWS)
      case 'SlowDown':
      case 'InternalError':
      case 'ServiceUnavailable':
      case 'RequestTimeout':
      case 'OperationAborted':
      case 'RequestLimitExceeded':
      case 'Throttling':
      case 'ThrottlingException':
      case 'TooManyRequests':
        return make('transient', `${this.endpointName} failed ${verb} ${where}: ${name}: ${detail}`);
      case 'TimeoutError':
        return make('transient', `no answer from ${this.endpointName} (${verb} ${where}): ${detail}`);
    }
    if (status === 403) {
      return make('permission', `access denied ${verb} ${where}: check the credential's ${action} permission`);
    }
    if (status === 404) return make('not-found', `object ${where} does not exist`);
    if (status === 301 || status === 307) {
      return make('permanent', `bucket '${this.bucket}' is not in region '${this.spec.region ?? 'us-east-1'}' at ${this.endpointName}: set AWS_REGION or region to the bucket's region`);
    }
    if (status !== undefined && (status >= 500 || status === 429 || status === 408)) {
      return make('transient', `${this.endpointName} failed ${verb} ${where}: HTTP ${status} ${name}: ${detail}`);
    }
    if (status !== undefined && status >= 300) {
      return make('permanent', `${this.endpointName} refused ${verb} ${where}: HTTP ${status} ${name}: ${detail}`);
    }
    if (/socket hang up|aborted|premature close|ECONNRESET|timed out/i.test(detail)) {
      return make('transient', `cannot reach ${this.endpointName} (${verb} ${where}): ${detail}`);
    }
    return make('permanent', `error ${verb} ${where} at ${this.endpointName}: ${name}: ${detail}`);
  }
}

/** Content-MD5 of the body; a stream body is read once for it (and opened again to send). */
async function md5Of(body: PutBody, size: number, onBodyError: (err: unknown) => Error): Promise<string> {
  const hash = createHash('md5');
  if (Buffer.isBuffer(body)) return hash.update(body).digest('base64');
  try {
    const checked = openBody(body).pipe(lengthChecker(size));
    for await (const chunk of checked) hash.update(chunk as Buffer);
  } catch (err) {
    throw onBodyError(err);
  }
  return hash.digest('base64');
}

/**
 * Cuts a stream of exactly `size` bytes into parts of `partSize` (the last one shorter).
 * @throws BodyLengthError when the stream is longer or shorter than `size`.
 */
async function* readParts(source: Readable, partSize: number, size: number): AsyncGenerator<Buffer> {
  let part = Buffer.allocUnsafe(Math.min(partSize, size));
  let filled = 0;
  let total = 0;
  for await (const data of source) {
    let chunk = data as Buffer;
    total += chunk.length;
    if (total > size) throw new BodyLengthError(size, total);
    while (chunk.length > 0) {
      const n = Math.min(chunk.length, part.length - filled);
      chunk.copy(part, filled, 0, n);
      filled += n;
      chunk = chunk.subarray(n);
      if (filled === part.length) {
        yield part;
        const left = size - total + chunk.length;
        part = Buffer.allocUnsafe(Math.min(partSize, Math.max(left, 1)));
        filled = 0;
      }
    }
  }
  if (total !== size) throw new BodyLengthError(size, total);
  if (filled > 0) yield part.subarray(0, filled);
}

function parseContentRange(value: string | undefined): { first: number; last: number; size: number | undefined } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value ?? '');
  if (!m) return undefined;
  return { first: Number(m[1]), last: Number(m[2]), size: m[3] === '*' ? undefined : Number(m[3]) };
}

function errorName(err: unknown): string {
  if (typeof err === 'object' && err !== null) {
    if ('Code' in err && typeof err.Code === 'string') return err.Code;
    if ('name' in err && typeof err.name === 'string') return err.name;
  }
  return 'Error';
}

/** A 412 answer to If-None-Match: *: the key already holds an object. */
function preconditionFailed(err: unknown): boolean {
  return errorName(err) === 'PreconditionFailed' || httpStatus(err) === 412;
}

function httpStatus(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && '$metadata' in err) {
    const meta = err.$metadata as { httpStatusCode?: number } | undefined;
    return meta?.httpStatusCode;
  }
  return undefined;
}

function errnoCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 4; depth++) {
    if (typeof e === 'object' && 'code' in e && typeof e.code === 'string') return e.code;
    e = e instanceof Error ? e.cause : undefined;
  }
  return undefined;
}

/** HTTP status S3 uses for an error code reported inside a DeleteObjects result. */
function statusForCode(code: string | undefined): number {
  if (code === 'AccessDenied') return 403;
  if (code === 'InternalError' || code === 'SlowDown' || code === 'ServiceUnavailable') return 503;
  return 400;
}

/** An AbortController that also fires when `parent` does; dispose() unhooks it. */
function linkedController(parent: AbortSignal | undefined): AbortController & { dispose: () => void } {
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(parent?.reason);
  if (parent?.aborted) controller.abort(parent.reason);
  else parent?.addEventListener('abort', onAbort, { once: true });
  return Object.assign(controller, { dispose: () => parent?.removeEventListener('abort', onAbort) });
}
