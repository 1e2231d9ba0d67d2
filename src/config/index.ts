/**
 * The config module's main exports (docs/DESIGN.md, "Architecture"): YAML config file → validated `Config` with key/line errors,
 * size and duration parsing, and gitignore-like exclude patterns. Documented for users in
 * docs/CONFIG.md.
 */
import { compileExcludes, excludesForSource, type ExcludeMatcher } from './exclude.js';
import type { Config } from './load.js';

export { ConfigError, formatIssue, type ConfigIssue } from './error.js';
export { ExcludePatternError, compileExcludes, excludesForSource, type ExcludeMatcher } from './exclude.js';
export {
  BLOB_SIZE_LIMIT_MAX,
  CHUNK_SIZE_MAX,
  CHUNK_SIZE_MIN,
  CONFIG_DEFAULTS,
  MAX_CHUNK_FACTOR,
  defaultIndexPath,
  loadConfig,
  maxChunkSize,
  parseConfig,
  type Config,
  type ParseConfigOptions,
} from './load.js';
export { formatSize, parseDuration, parseSize } from './size.js';

/**
 * The exclude matcher for one of `config.sourceDirs`: the config's patterns with absolute ones
 * (starting with a source dir's path) resolved for `sourceDir` (see `excludesForSource`).
 * Patterns were validated when the config was loaded, so this does not throw for a loaded config.
 */
export function excludeMatcherFor(config: Pick<Config, 'exclude' | 'sourceDirs'>, sourceDir: string): ExcludeMatcher {
  return compileExcludes(excludesForSource(config.exclude, sourceDir, config.sourceDirs));
}
export { MONITORING_DEFAULTS, isLoopback, type HookCommand, type HooksConfig, type MetricsListen, type MonitoringConfig } from './monitoring.js';
