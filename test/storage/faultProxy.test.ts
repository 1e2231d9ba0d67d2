import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { classifyS3Request, INTEGRITY_CHECKS, integrityError } from '../helpers/faultProxy.js';

// The write-only promise of later issues rests on this table: keep it exact.
describe('fault proxy: S3 operation classification (path-style)', () => {
  it.each([
    ['GET', '/', 'ListBuckets'],
    ['PUT', '/b', 'CreateBucket'],
    ['HEAD', '/b', 'HeadBucket'],
    ['GET', '/b?list-type=2&prefix=p%2F', 'ListObjectsV2'],
    ['GET', '/b/?list-type=2&continuation-token=x', 'ListObjectsV2'],
    ['GET', '/b?prefix=p', 'ListObjects'],
    ['GET', '/b?uploads', 'ListMultipartUploads'],
    ['POST', '/b?delete', 'DeleteObjects'],
    ['POST', '/b/?delete=', 'DeleteObjects'],
    ['PUT', '/b/blobs/ab/cd/abcd?x-id=PutObject', 'PutObject'],
    ['PUT', '/b/k', 'PutObject'],
    ['POST', '/b/k?uploads&x-id=CreateMultipartUpload', 'CreateMultipartUpload'],
    ['PUT', '/b/k?partNumber=3&uploadId=u&x-id=UploadPart', 'UploadPart'],
    ['POST', '/b/k?uploadId=u', 'CompleteMultipartUpload'],
    ['DELETE', '/b/k?uploadId=u&x-id=AbortMultipartUpload', 'AbortMultipartUpload'],
    ['GET', '/b/k?uploadId=u', 'ListParts'],
    ['GET', '/b/k?x-id=GetObject', 'GetObject'],
    ['HEAD', '/b/k', 'HeadObject'],
    ['DELETE', '/b/k?x-id=DeleteObject', 'DeleteObject'],
    ['PUT', '/b/k?tagging', 'Other'],
  ])('%s %s → %s', (method, url, op) => {
    expect(classifyS3Request(method, url).op).toBe(op);
  });

  it('decodes bucket and key, and spots copies', () => {
    expect(classifyS3Request('GET', '/b/index/h%C3%A9-1.db')).toEqual({ op: 'GetObject', bucket: 'b', key: 'index/hé-1.db' });
    expect(classifyS3Request('PUT', '/b/k', { 'x-amz-copy-source': '/b/other' }).op).toBe('CopyObject');
  });
});

// The checks stand in for S3's on servers that skip them: a check that accepts everything would
// make the integrity tests pass for nothing.
describe('fault proxy: what S3 checks of an upload (integrityError)', () => {
  const body = Buffer.from('the bytes that were sent');
  const md5 = createHash('md5').update(body).digest('base64');
  const sha = createHash('sha256').update(body).digest();
  const other = createHash('sha256').update('other bytes').digest();
  const otherMd5 = createHash('md5').update('other bytes').digest('base64');
  const code = (headers: Record<string, string>, checks = INTEGRITY_CHECKS): string | undefined => integrityError(headers, body, checks)?.code;

  it('accepts matching headers, none, UNSIGNED-PAYLOAD and streaming payloads', () => {
    expect(code({ 'content-md5': md5, 'x-amz-checksum-sha256': sha.toString('base64'), 'x-amz-content-sha256': sha.toString('hex') })).toBeUndefined();
    expect(code({})).toBeUndefined();
    expect(code({ 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' })).toBeUndefined();
    expect(code({ 'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER' })).toBeUndefined();
  });

  it("answers S3's codes and messages for a mismatch or a malformed value", () => {
    expect(integrityError({ 'content-md5': otherMd5 }, body, INTEGRITY_CHECKS)).toEqual({
      status: 400,
      code: 'BadDigest',
      message: 'The Content-MD5 you specified did not match what we received.',
      extra: { ExpectedDigest: otherMd5 },
    });
    expect(integrityError({ 'x-amz-checksum-sha256': other.toString('base64') }, body, INTEGRITY_CHECKS)).toEqual({
      status: 400,
      code: 'BadDigest',
      message: 'The SHA256 you specified did not match the calculated checksum.',
    });
    expect(integrityError({ 'x-amz-content-sha256': other.toString('hex') }, body, INTEGRITY_CHECKS)).toEqual({
      status: 400,
      code: 'XAmzContentSHA256Mismatch',
      message: "The provided 'x-amz-content-sha256' header does not match what was computed.",
      extra: { ClientComputedContentSHA256: other.toString('hex'), S3ComputedContentSHA256: sha.toString('hex') },
    });
    expect(code({ 'content-md5': 'not base64' })).toBe('InvalidDigest');
    expect(code({ 'x-amz-checksum-sha256': sha.toString('hex') })).toBe('InvalidRequest');
    expect(code({ 'x-amz-content-sha256': 'nonsense' })).toBe('InvalidArgument');
  });

  it('checks only what it is asked to', () => {
    const wrong = { 'content-md5': otherMd5, 'x-amz-checksum-sha256': other.toString('base64'), 'x-amz-content-sha256': other.toString('hex') };
    expect(code(wrong, [])).toBeUndefined();
    expect(code(wrong, ['content-md5'])).toBe('BadDigest');
    expect(integrityError(wrong, body, ['checksum-sha256'])?.message).toMatch(/SHA256/);
    expect(code(wrong, ['payload-sha256'])).toBe('XAmzContentSHA256Mismatch');
  });
});
