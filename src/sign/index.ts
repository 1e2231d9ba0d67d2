export { SignError, type SignErrorKind } from './errors.js';
export { ED25519, SshPublicKey, SigningKey, parsePublicKey, parsePrivateKey, loadSigningKey } from './keys.js';
export { signMessage, parseSignature, checkSignature, type SshSignature, type SshsigHash } from './sshsig.js';
export {
  parseAllowedSigners,
  loadAllowedSigners,
  matchPatternList,
  verifySignature,
  type AllowedSigner,
  type VerifyFailure,
  type VerifyInput,
  type VerifyResult,
} from './allowedSigners.js';
export { snapshotStatement, SNAPSHOT_NAMESPACE } from './statement.js';
