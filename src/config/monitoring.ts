/**
 * The monitoring keys of a config (docs/MONITORING.md, docs/CONFIG.md "Monitoring"):
 * `metrics_file`, `metrics_listen`, `metrics_allow_remote`, `hooks:`, `healthcheck_url`,
 * `healthcheck_timeout`. Validated like every other key (src/config/load.ts): each problem names
 * the key and its line.
 */
import { isIP } from 'node:net';
import { isScalar, isSeq } from 'yaml';
import type { Entry, Reader } from './load.js';

/** load.ts's path check, passed in (a value import back into load.ts would be an import cycle). */
type AbsolutePath = (p: string) => string | { error: string };

export const MONITORING_KEYS = ['metrics_file', 'metrics_listen', 'metrics_allow_remote', 'hooks', 'healthcheck_url', 'healthcheck_timeout'] as const;
const HOOK_KEYS = ['before', 'after', 'on_error', 'timeout'] as const;

/** One hook command: a string runs through `/bin/sh -c`, a list is an argv run directly (no shell). */
export interface HookCommand {
  argv: string[];
  shell: boolean;
}

export interface HooksConfig {
  before?: HookCommand;
  after?: HookCommand;
  onError?: HookCommand;
  /** Each hook is killed after this long (ms) and counts as failed. */
  timeout: number;
}

export interface MetricsListen {
  /** An IP address literal (IPv6 without brackets). */
  host: string;
  port: number;
}

export interface MonitoringConfig {
  /** Absolute path of the Prometheus textfile written after each run. */
  metricsFile?: string;
  /** Daemon only: serve /metrics on this address. */
  metricsListen?: MetricsListen;
  hooks?: HooksConfig;
  /** healthchecks.io-style base URL: `<url>/start`, `<url>`, `<url>/fail`. */
  healthcheckUrl?: string;
  /** A ping is abandoned (with a warning) after this long (ms). */
  healthcheckTimeout: number;
}

export const MONITORING_DEFAULTS = {
  hookTimeout: 10 * 60 * 1000, // 10m
  healthcheckTimeout: 10 * 1000, // 10s
} as const;

/** Whether `host` (an IP literal) is a loopback address: 127.0.0.0/8 or ::1. */
export function isLoopback(host: string): boolean {
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || /^(0{0,4}:){7}0{0,3}1$/.test(host) || /^::ffff:127\./i.test(host);
  return false;
}

/** `HOST:PORT`, `[V6]:PORT`, `localhost:PORT` or a bare `PORT` (127.0.0.1); or an error message. */
export function parseListen(text: string): MetricsListen | { error: string } {
  const bad = { error: `${JSON.stringify(text)} is not an address like 127.0.0.1:9745, [::1]:9745 or a port number` };
  const m = /^(?:(?:\[([^\]]+)\]|([^:[\]]+)):)?(\d{1,5})$/.exec(text);
  if (!m) return bad;
  let host = m[1] ?? m[2] ?? '127.0.0.1';
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return { error: `port ${port} is out of range (1–65535)` };
  if (host === 'localhost') host = '127.0.0.1';
  if (m[1] !== undefined ? isIP(host) !== 6 : isIP(host) !== 4) {
    return { error: `${JSON.stringify(text)}: the host must be an IP address (127.0.0.1, [::1]), not a name` };
  }
  return { host, port };
}

function readHook(r: Reader, e: Entry): HookCommand | undefined {
  if (isSeq(e.value)) {
    const items = r.stringList(e, 'argv strings');
    if (!items) return undefined;
    if (items.length === 0) {
      r.fail(e, 'is empty: give a command (a string for /bin/sh -c, or a list: program and arguments)');
      return undefined;
    }
    return { argv: items.map((i) => i.value), shell: false };
  }
  if (isScalar(e.value) && typeof e.value.value === 'string') {
    const s = r.string(e, 'a command');
    return s === undefined ? undefined : { argv: [s], shell: true };
  }
  if (r.present(e)) r.fail(e, `expected a command (a string for /bin/sh -c, or a list: program and arguments), got ${r.describe(e.value)}`);
  return undefined;
}

/** The monitoring settings, or undefined when the config sets none (problems go to `r`). */
export function readMonitoring(r: Reader, top: Map<string, Entry>, absolutePath: AbsolutePath): MonitoringConfig | undefined {
  if (!MONITORING_KEYS.some((k) => top.has(k))) return undefined;
  const out: MonitoringConfig = { healthcheckTimeout: MONITORING_DEFAULTS.healthcheckTimeout };

  const fileEntry = top.get('metrics_file');
  if (fileEntry) {
    const p = r.string(fileEntry, 'an absolute file path');
    const abs = p === undefined ? undefined : absolutePath(p);
    if (typeof abs === 'string' && abs !== '/') out.metricsFile = abs;
    else if (abs !== undefined) r.fail(fileEntry, typeof abs === 'string' ? 'must name a file, not "/"' : abs.error);
  }

  let allowRemote = false;
  const remoteEntry = top.get('metrics_allow_remote');
  if (remoteEntry) allowRemote = r.boolean(remoteEntry) ?? false;
  const listenEntry = top.get('metrics_listen');
  if (listenEntry) {
    const v = listenEntry.value;
    const text = isScalar(v) && typeof v.value === 'number' ? String(v.value) : r.string(listenEntry, 'an address like 127.0.0.1:9745');
    const parsed = text === undefined ? undefined : parseListen(text);
    if (parsed !== undefined && 'error' in parsed) r.fail(listenEntry, parsed.error);
    else if (parsed !== undefined && !isLoopback(parsed.host) && !allowRemote) {
      r.fail(listenEntry, `${parsed.host} is not a loopback address: the metrics would be open to the network; set metrics_allow_remote: true to allow it`);
    } else if (parsed !== undefined) out.metricsListen = parsed;
  }

  const hooksEntry = top.get('hooks');
  if (hooksEntry) {
    const keys = r.map(hooksEntry.value, 'hooks', HOOK_KEYS, 'hooks', r.lineOf(hooksEntry.keyNode));
    if (keys) {
      const hooks: HooksConfig = { timeout: MONITORING_DEFAULTS.hookTimeout };
      for (const [key, field] of [['before', 'before'], ['after', 'after'], ['on_error', 'onError']] as const) {
        const e = keys.get(key);
        const cmd = e === undefined ? undefined : readHook(r, e);
        if (cmd) hooks[field] = cmd;
      }
      const t = keys.get('timeout');
      if (t) {
        const ms = r.duration(t);
        if (ms !== undefined && ms < 1000) r.fail(t, 'must be at least 1s');
        else if (ms !== undefined) hooks.timeout = ms;
      }
      out.hooks = hooks;
    }
  }

  const urlEntry = top.get('healthcheck_url');
  if (urlEntry) {
    const u = r.string(urlEntry, 'a URL');
    const url = u !== undefined && URL.canParse(u) ? new URL(u) : undefined;
    // The URL is a credential of sorts (anyone holding it can ping): messages name its origin only.
    if (u !== undefined && (!url || (url.protocol !== 'http:' && url.protocol !== 'https:'))) r.fail(urlEntry, 'is not an http:// or https:// URL');
    else if (url !== undefined) out.healthcheckUrl = u!.replace(/\/+$/, '');
  }
  const timeoutEntry = top.get('healthcheck_timeout');
  if (timeoutEntry) {
    const ms = r.duration(timeoutEntry);
    if (ms !== undefined && ms < 100) r.fail(timeoutEntry, 'must be at least 100ms');
    else if (ms !== undefined) out.healthcheckTimeout = ms;
  }
  return out;
}
