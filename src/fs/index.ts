/**
 * The filesystem layer: the source walker and source-file reader used by backup, and the safe
 * target writer used by restore and fetch. Paths are Buffers throughout (see
 * src/snapshot/types.ts); nothing here decodes a file name except for display and exclude
 * matching.
 */
export { walk, walkedEntryOf, entryTypeOf, fileStatOf, sameStat, readDirectory, type FileStat, type WalkedEntry, type WalkOptions, type WalkWarning, type WalkOperation } from './walk.js';
export {
  openSourceFile,
  SourceFile,
  SourceFileError,
  DEFAULT_READ_SIZE,
  SOURCE_OPEN_FLAGS,
  sourceOpenError,
  checkOpenedSourceFile,
  type ChangeReport,
  type ChangeReason,
  type OpenSourceOptions,
  type SourceFileProblem,
} from './sourceFile.js';
export {
  TargetWriter,
  RestoreFile,
  RestoreError,
  splitDeviceNumber,
  utimesSeconds,
  type RestoreWarning,
  type TargetWriterOptions,
} from './restoreWriter.js';
export { MountFilter, PSEUDO_FS_TYPES, type MountDecision } from './mounts.js';
export { UnsafePathError, splitEntryPath, joinEntryPath, joinAbsPath, displayPath } from './paths.js';
