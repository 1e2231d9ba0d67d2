/**
 * The MultipartJanitor of an S3 store: ListMultipartUploads and AbortMultipartUpload under the
 * store's prefix, through the S3Storage's own client and error classification.
 *
 * Kept here, next to its only user, rather than in src/storage/s3.ts: the Storage contract stays
 * the handful of verbs every backend has, and the S3 backend is not touched. It needs the
 * s3:ListBucketMultipartUploads and s3:AbortMultipartUpload permissions; servers that do not
 * implement the listing (s3rver answers 501 NotImplemented) make listIncompleteUploads throw,
 * and prune then notes that the bucket's lifecycle rule must do the job.
 */
import type { S3Storage } from '../storage/s3.js';
import { StorageError } from '../storage/types.js';
import type { IncompleteUpload, MultipartJanitor } from './janitor.js';

export class S3MultipartJanitor implements MultipartJanitor {
  constructor(private readonly store: Pick<S3Storage, 'client' | 'bucket' | 'prefix' | 'classify' | 'description'>) {}

  /**
   * Pages through ListMultipartUploads (1000 a page) for the store's prefix.
   * @throws StorageError (classified by the store); 'permanent' for a truncated page without markers.
   */
  async *listIncompleteUploads(): AsyncIterable<IncompleteUpload> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      let page;
      try {
        // Loaded here, not at the top: src/prune is imported by the CLI for every store, and
        // the AWS SDK costs ~90 ms and ~27 MB to load.
        const { ListMultipartUploadsCommand } = await import('@aws-sdk/client-s3');
        page = await this.store.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.store.bucket, Prefix: this.store.prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker, MaxUploads: 1000 }),
        );
      } catch (err) {
        throw this.store.classify(err, 'list', '');
      }
      for (const u of page.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined || !u.Key.startsWith(this.store.prefix)) continue;
        // No initiation time: treat it as new, so it is never aborted on a guess.
        yield { key: u.Key.slice(this.store.prefix.length), uploadId: u.UploadId, initiated: u.Initiated ?? new Date() };
      }
      if (!page.IsTruncated) return;
      if (page.NextKeyMarker === undefined) {
        throw new StorageError(`${this.store.description}: truncated multipart upload listing without a marker`, 'permanent');
      }
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  /** @throws StorageError; an upload already gone (404 NoSuchUpload) is fine. */
  async abortIncompleteUpload(upload: IncompleteUpload): Promise<void> {
    try {
      const { AbortMultipartUploadCommand } = await import('@aws-sdk/client-s3');
      await this.store.client.send(new AbortMultipartUploadCommand({ Bucket: this.store.bucket, Key: this.store.prefix + upload.key, UploadId: upload.uploadId }));
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404 || (err as { name?: string }).name === 'NoSuchUpload') return;
      throw this.store.classify(err, 'abort', upload.key);
    }
  }
}
