/**
 * Incomplete multipart uploads: an optional store capability, outside the Storage contract.
 *
 * A backup killed in the middle of a multipart upload leaves parts on S3 that are invisible to
 * listings and billed until aborted. Prune aborts those older than its grace period (a younger
 * one may belong to a backup running right now). Only stores that have such uploads implement
 * this (the S3 store); prune detects it at runtime with asMultipartJanitor, or is handed one.
 */

/** An upload that was started and neither completed nor aborted. */
export interface IncompleteUpload {
  /** Key relative to the store prefix. */
  key: string;
  uploadId: string;
  /** When the upload was started (the server's clock). */
  initiated: Date;
}

export interface MultipartJanitor {
  /**
   * Every incomplete upload under the store's prefix.
   * @throws StorageError; 'permanent' when the server does not implement the listing.
   */
  listIncompleteUploads(): AsyncIterable<IncompleteUpload>;
  /**
   * Aborts one upload; an upload that is already gone is not an error.
   * @throws StorageError
   */
  abortIncompleteUpload(upload: IncompleteUpload): Promise<void>;
}

/** The store as a MultipartJanitor when it implements both methods, else undefined. */
export function asMultipartJanitor(store: unknown): MultipartJanitor | undefined {
  if (typeof store !== 'object' || store === null) return undefined;
  const s = store as Partial<Record<keyof MultipartJanitor, unknown>>;
  return typeof s.listIncompleteUploads === 'function' && typeof s.abortIncompleteUpload === 'function' ? (store as MultipartJanitor) : undefined;
}
