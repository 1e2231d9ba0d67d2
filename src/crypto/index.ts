/**
 * age v1 (https://age-encryption.org/v1) on node:crypto alone: X25519 recipients, streaming
 * encryption and decryption, and random access to 64 KiB STREAM segments. Its main exports
 * (docs/DESIGN.md, "Architecture").
 */
export { AgeError, type AgeErrorKind } from './errors.js';
export {
  Identity,
  Recipient,
  generateKeyPair,
  identityToRecipient,
  loadIdentities,
  parseIdentity,
  parseIdentityFile,
  parseRecipient,
  parseRecipientsFile,
} from './keys.js';
export { parseHeader, type ParsedHeader, type Stanza } from './header.js';
export {
  AgeDecryptor,
  AgeEncryptor,
  PAYLOAD_NONCE_SIZE,
  SEGMENT_CIPHER_SIZE,
  SEGMENT_SIZE,
  ciphertextSize,
  decryptSegments,
  openSegments,
  plaintextSize,
  segmentCount,
} from './stream.js';
export { createDecryptStream, createEncryptStream, decrypt, encrypt } from './age.js';
export {
  AgeRandomAccess,
  bufferReader,
  decryptRange,
  openAgeFile,
  segmentRange,
  type AgeFileInfo,
  type ReadRange,
  type SegmentPlan,
} from './random.js';
