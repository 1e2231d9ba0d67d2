export { SignError, type SignErrorKind } from './errors.js';
export { ED25519, SshPublicKey, SigningKey, parsePublicKey, parsePrivateKey, loadSigningKey } from './keys.js';
export { snapshotStatement, SNAPSHOT_NAMESPACE } from './statement.js';
