/**
 * Monitoring (docs/MONITORING.md): the metrics textfile and HTTP endpoint, hooks and
 * health-check pings around each backup run, and the daemon's status file.
 */
export { HookError, hookEnv, runHook, type HookContext, type HookName } from './hooks.js';
export { startMetricsServer, type MetricsServer } from './http.js';
export { METRIC, emptyMetrics, readPreviousMetrics, renderMetrics, writeFileAtomic, type MetricsState, type RunCounters } from './metrics.js';
export { ping, pingUrl, type PingKind } from './ping.js';
export { RunMonitor, countersOf, type RunMonitorOptions } from './run.js';
export { STATUS_VERSION, liveness, readStatus, selfIdentity, statusPathFor, writeStatus, type DaemonStatus, type LastRun } from './state.js';
