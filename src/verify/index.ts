/** Store integrity checks: keyless (blob hashes, manifests) and deep (every chunk, with the key). */
export { describeProblem, verifyStore, type VerifyEvent, type VerifyOptions, type VerifyProblem, type VerifyReport } from './verify.js';
