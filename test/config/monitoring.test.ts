/**
 * The monitoring keys of a config (src/config/monitoring.ts): defaults, both hook forms, the
 * loopback rule of metrics_listen, and errors that name the key and its line.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig, type Config } from '../../src/config/index.js';
import { generateKeyPair } from '../../src/crypto/index.js';

const R = generateKeyPair().recipient;

/** A valid config of three lines; `extra` starts at line 4. */
function parse(extra: string): Config {
  return parseConfig(`source_dirs: [/etc]\nage_recipient: ${R}\nlocal: {path: /srv/backup}\n${extra}`, 'config.yaml', { hostname: 'h', uid: 1000, homedir: '/home/t', env: {}, baseDir: '/nonexistent' });
}

function errorsOf(extra: string): string[] {
  try {
    parse(extra);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message.split('\n');
  }
  throw new Error('expected a ConfigError');
}

describe('monitoring config', () => {
  it('is absent without monitoring keys, and takes every key with its defaults', () => {
    expect(parse('').monitoring).toBeUndefined();
    const c = parse(
      [
        'metrics_file: /var/lib/node_exporter/textfile/vaultik.prom',
        'metrics_listen: 127.0.0.1:9745',
        'hooks:',
        '  before: pg_dump db > /srv/db.sql',
        '  after: [/usr/local/bin/report, --ok]',
        'healthcheck_url: https://hc-ping.com/abc/',
      ].join('\n'),
    );
    expect(c.monitoring).toEqual({
      metricsFile: '/var/lib/node_exporter/textfile/vaultik.prom',
      metricsListen: { host: '127.0.0.1', port: 9745 },
      hooks: { before: { argv: ['pg_dump db > /srv/db.sql'], shell: true }, after: { argv: ['/usr/local/bin/report', '--ok'], shell: false }, timeout: 600_000 },
      healthcheckUrl: 'https://hc-ping.com/abc',
      healthcheckTimeout: 10_000,
    });
  });

  it('metrics_listen: loopback forms are accepted; another address needs metrics_allow_remote', () => {
    expect(parse('metrics_listen: 9745').monitoring?.metricsListen).toEqual({ host: '127.0.0.1', port: 9745 });
    expect(parse('metrics_listen: localhost:9745').monitoring?.metricsListen).toEqual({ host: '127.0.0.1', port: 9745 });
    expect(parse('metrics_listen: "[::1]:9745"').monitoring?.metricsListen).toEqual({ host: '::1', port: 9745 });
    expect(errorsOf('metrics_listen: 0.0.0.0:9745')).toEqual([
      'config.yaml:4: metrics_listen: 0.0.0.0 is not a loopback address: the metrics would be open to the network; set metrics_allow_remote: true to allow it',
    ]);
    expect(parse('metrics_listen: 0.0.0.0:9745\nmetrics_allow_remote: true').monitoring?.metricsListen).toEqual({ host: '0.0.0.0', port: 9745 });
    expect(errorsOf('metrics_listen: example.com:9745')[0]).toBe('config.yaml:4: metrics_listen: "example.com:9745": the host must be an IP address (127.0.0.1, [::1]), not a name');
    expect(errorsOf('metrics_listen: 127.0.0.1:70000')[0]).toBe('config.yaml:4: metrics_listen: port 70000 is out of range (1–65535)');
  });

  it('names the key and line of every bad value', () => {
    expect(
      errorsOf(['metrics_file: relative.prom', 'hooks:', '  before: 42', '  after: []', '  timeout: 0.5s', '  befor: x', 'healthcheck_url: ftp://x', 'healthcheck_timeout: 10'].join('\n')),
    ).toEqual([
      'config.yaml:4: metrics_file: "relative.prom" is not an absolute path',
      'config.yaml:6: hooks.before: expected a command (a string for /bin/sh -c, or a list: program and arguments), got 42',
      'config.yaml:7: hooks.after: is empty: give a command (a string for /bin/sh -c, or a list: program and arguments)',
      'config.yaml:8: hooks.timeout: must be at least 1s',
      'config.yaml:9: hooks.befor: unknown key; did you mean before?',
      'config.yaml:10: healthcheck_url: is not an http:// or https:// URL',
      'config.yaml:11: healthcheck_timeout: cannot parse duration 10: a number needs a unit, e.g. "10s" or "10m"',
    ]);
  });
});
