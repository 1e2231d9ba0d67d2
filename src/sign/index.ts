export { SignError, type SignErrorKind } from './errors.js';
export { ED25519, SshPublicKey, SigningKey, parsePublicKey, parsePrivateKey, loadSigningKey } from './keys.js';
export { signMessage, parseSignature, checkSignature, type SshSignature, type SshsigHash } from './sshsig.js';
export { snapshotStatement, SNAPSHOT_NAMESPACE } from './statement.js';
