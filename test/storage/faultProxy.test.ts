import { describe, expect, it } from 'vitest';
import { classifyS3Request } from '../helpers/faultProxy.js';

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
