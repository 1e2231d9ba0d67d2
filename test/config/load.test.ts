import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, excludeMatcherFor, loadConfig, parseConfig, type Config, type ParseConfigOptions } from '../../src/config/index.js';
import { generateKeyPair } from '../../src/crypto/index.js';
import { ExitCode, UsageError } from '../../src/errors.js';
import { makeTempDir } from '../helpers/tmp.js';

const R1 = generateKeyPair().recipient;
const R2 = generateKeyPair().recipient;
const R3 = generateKeyPair().recipient;
/** A well-formed recipient with its last character changed: bad checksum. */
const BAD = R1.slice(0, -1) + (R1.endsWith('q') ? 'p' : 'q');

const OPTIONS: ParseConfigOptions = { hostname: 'testhost', uid: 1000, homedir: '/home/t', env: {}, baseDir: '/nonexistent' };

/** A valid config of three lines; `extra` starts at line 4. */
function base(extra = ''): string {
  return `source_dirs: [/etc, /home/user/data]\nage_recipient: ${R1}\nlocal: {path: /srv/backup}\n${extra}`;
}

function parse(text: string, options: ParseConfigOptions = {}): Config {
  return parseConfig(text, 'config.yaml', { ...OPTIONS, ...options });
}

/** The issue lines of the ConfigError that parsing `text` throws. */
function errorsOf(text: string, options: ParseConfigOptions = {}): string[] {
  try {
    parse(text, options);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message.split('\n');
  }
  throw new Error('expected a ConfigError');
}

describe('parseConfig: a valid config', () => {
  it('applies every default', () => {
    const c = parse(base());
    expect(c).toEqual({
      sourceDirs: ['/etc', '/home/user/data'],
      exclude: [],
      oneFileSystem: false,
      recipients: [R1],
      storage: { type: 'local', path: '/srv/backup', prefix: '' },
      backupInterval: 3_600_000,
      fullScanInterval: 86_400_000,
      minTimeBetweenRun: 900_000,
      indexPath: '/home/t/.local/state/vaultik/index.sqlite',
      chunkSize: 10_000_000,
      blobSizeLimit: 10_000_000_000,
      indexPrefix: 'index/',
      compressionLevel: 3,
      hostname: 'testhost',
      sourcePath: 'config.yaml',
    } satisfies Config);
  });

  it('reads one_file_system', () => {
    expect(parse(base('one_file_system: true\n')).oneFileSystem).toBe(true);
    expect(parse(base('one_file_system: false\n')).oneFileSystem).toBe(false);
  });

  it('defaults index_path by user: root, XDG_STATE_HOME, home', () => {
    expect(parse(base(), { uid: 0 }).indexPath).toBe('/var/lib/vaultik/index.sqlite');
    expect(parse(base(), { env: { XDG_STATE_HOME: '/st' } }).indexPath).toBe('/st/vaultik/index.sqlite');
    expect(parse(base(), { env: { XDG_STATE_HOME: 'relative' } }).indexPath).toBe('/home/t/.local/state/vaultik/index.sqlite');
  });

  it("reads the original specification's example config, s3 block included", () => {
    const text = [
      'source_dirs: [/etc, /home/user/data]',
      "exclude: ['*.log', '*.tmp']",
      `age_recipient: ${R1}`,
      's3: {endpoint: "https://s3.example.com", bucket: backups, prefix: host1, access_key_id: AK, secret_access_key: SK, region: eu-west-1}',
      'backup_interval: 1h',
      'full_scan_interval: 24h',
      'min_time_between_run: 15m',
      'index_path: /var/lib/vaultik/index.sqlite',
      'chunk_size: 10MB',
      'blob_size_limit: 10GB',
      'index_prefix: index/',
    ].join('\n');
    const c = parse(text);
    expect(c.exclude).toEqual(['*.log', '*.tmp']);
    expect(c.storage).toEqual({
      type: 's3',
      endpoint: 'https://s3.example.com',
      bucket: 'backups',
      prefix: 'host1/',
      accessKeyId: 'AK',
      secretAccessKey: 'SK',
      region: 'eu-west-1',
    });
    expect(c.indexPath).toBe('/var/lib/vaultik/index.sqlite');
  });

  it('reads every s3 key', () => {
    const text = base().replace('local: {path: /srv/backup}', [
      's3:',
      '  bucket: b',
      '  prefix: a/b/',
      '  endpoint: http://127.0.0.1:9000',
      '  region: us-east-1',
      '  access_key_id: AK',
      '  secret_access_key: SK',
      '  session_token: TOK',
      '  force_path_style: false',
      '  conditional_writes: false',
      '  object_lock: {mode: COMPLIANCE, days: 30}',
      '  multipart_threshold: 64MiB',
      '  part_size: 16MiB',
      '  concurrency: 8',
    ].join('\n'));
    expect(parse(text).storage).toEqual({
      type: 's3',
      bucket: 'b',
      prefix: 'a/b/',
      endpoint: 'http://127.0.0.1:9000',
      region: 'us-east-1',
      accessKeyId: 'AK',
      secretAccessKey: 'SK',
      sessionToken: 'TOK',
      forcePathStyle: false,
      conditionalWrites: false,
      objectLock: { mode: 'compliance', days: 30 },
      multipartThreshold: 64 * 1024 * 1024,
      partSize: 16 * 1024 * 1024,
      concurrency: 8,
    });
  });

  it('reads conditional_writes: auto, and leaves it unset when omitted', () => {
    const s3 = (extra: string): unknown => parse(base().replace('local: {path: /srv/backup}', `s3:\n  bucket: b${extra}`)).storage;
    expect(s3('\n  conditional_writes: auto')).toMatchObject({ conditionalWrites: 'auto' });
    expect(s3('\n  conditional_writes: true')).toMatchObject({ conditionalWrites: true });
    expect(s3('')).not.toHaveProperty('conditionalWrites');
  });

  it('leaves omitted S3 credentials to the AWS SDK chain (environment, profiles)', () => {
    const c = parse(base().replace('local: {path: /srv/backup}', 's3: {bucket: b}'), { env: { AWS_ACCESS_KEY_ID: 'x' } });
    expect(c.storage).toEqual({ type: 's3', bucket: 'b', prefix: '' });
  });

  it('normalizes paths and prefixes', () => {
    const c = parse(
      'source_dirs: [/etc/, /home//user/./data/]\n' +
        `age_recipient: ${R1}\nlocal: {path: /srv/backup/, prefix: host1}\nindex_prefix: snaps\nindex_path: /var//x/../y.sqlite\n`,
    );
    expect(c.sourceDirs).toEqual(['/etc', '/home/user/data']);
    expect(c.storage).toEqual({ type: 'local', path: '/srv/backup', prefix: 'host1/' });
    expect(c.indexPrefix).toBe('snaps/');
    expect(c.indexPath).toBe('/var/y.sqlite');
  });

  it('accepts "/" as the only source dir', () => {
    expect(parse(base().replace('[/etc, /home/user/data]', '[/]')).sourceDirs).toEqual(['/']);
  });

  it('reads sizes, durations, levels and the hostname', () => {
    const c = parse(base('chunk_size: 512KiB\nblob_size_limit: 2MiB\nbackup_interval: 1h30m\nfull_scan_interval: 7d\nmin_time_between_run: 0\ncompression_level: 19\nhostname: web-01.example\n'));
    expect(c.chunkSize).toBe(524_288);
    expect(c.blobSizeLimit).toBe(2 * 1024 * 1024);
    expect(c.backupInterval).toBe(5_400_000);
    expect(c.fullScanInterval).toBe(7 * 86_400_000);
    expect(c.minTimeBetweenRun).toBe(0);
    expect(c.compressionLevel).toBe(19);
    expect(c.hostname).toBe('web-01.example');
  });

  it('accepts a size as a plain number of bytes', () => {
    expect(parse(base('chunk_size: 1048576\n')).chunkSize).toBe(1_048_576);
  });

  it('combines age_recipient, age_recipients and age_recipients_file, without duplicates', () => {
    const c = parse(base(`age_recipients: [${R2}, ${R1.toUpperCase()}]\nage_recipients_file: keys.txt\n`), {
      baseDir: '/cfg',
      readFile: (p) => {
        expect(p).toBe('/cfg/keys.txt');
        return `# team keys\r\n${R3}\r\n\r\n   ${R2}  \n`;
      },
    });
    expect(c.recipients).toEqual([R1, R2, R3]);
  });

  it('follows YAML anchors and aliases', () => {
    const c = parse(`source_dirs: &dirs [/etc]\nage_recipient: &r ${R1}\nage_recipients: [*r]\nlocal: {path: /srv}\n`);
    expect(c.recipients).toEqual([R1]);
    expect(c.sourceDirs).toEqual(['/etc']);
  });

  it('keeps exclude patterns as written and resolves absolute ones per source dir', () => {
    const c = parse(base("exclude: ['*.log', '/home/user/data/cache/', '/etc/ssl/private', '!keep.log']\n"));
    expect(c.exclude).toEqual(['*.log', '/home/user/data/cache/', '/etc/ssl/private', '!keep.log']);
    const data = excludeMatcherFor(c, '/home/user/data');
    expect(data.matches('cache', true)).toBe(true);
    expect(data.matches('ssl/private', true)).toBe(false);
    expect(data.matches('x.log', false)).toBe(true);
    expect(data.matches('keep.log', false)).toBe(false);
    const etc = excludeMatcherFor(c, '/etc');
    expect(etc.matches('ssl/private', true)).toBe(true);
    expect(etc.matches('cache', true)).toBe(false);
  });
});

/** [what, config text, expected issue lines (each a prefix of the message's line, in order)] */
type Case = [string, string, string[]];

const cases: Case[] = [
  // YAML itself
  ['unclosed bracket', base('chunk_size: [1MB\n'), ['config.yaml:4: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ] (opened on line 4, still open on line 5)']],
  ['unclosed brace', base().replace('local: {path: /srv/backup}', 'local: {path: /srv\nchunk_size: 1MB'), ['config.yaml:3: YAML syntax error: ']],
  ['unterminated quote', base('hostname: "abc\nindex_prefix: x/\n'), ['config.yaml:4: YAML syntax error: Missing closing "quote (opened on line 4, still open on line 6)']],
  ['bad indentation', base('exclude:\n  - a\n - b\n'), ['config.yaml:6: YAML syntax error: ']],
  ['tab indentation', base('s3:\n\tbucket: b\n'), ['config.yaml:5: YAML syntax error: ']],
  ['several documents', base('---\nchunk_size: 1MB\n'), ['config.yaml:4: YAML syntax error: Source contains multiple documents']],
  ['duplicate key', base('chunk_size: 1MB\nchunk_size: 2MB\n'), ['config.yaml:5: chunk_size: duplicate key (first set on line 4)']],
  ['duplicate key in a block', base().replace('local: {path: /srv/backup}', 'local:\n  path: /a\n  path: /b'), ['config.yaml:5: local.path: duplicate key (first set on line 4)']],
  ['empty file', '', ['config.yaml: the file is empty']],
  ['only comments', '# nothing\n', ['config.yaml: the file is empty']],
  ['not a mapping', '- /etc\n', ['config.yaml:1: expected a mapping of keys (source_dirs:, age_recipient:, s3: ...), got a list']],
  ['a scalar document', 'hello\n', ['config.yaml:1: expected a mapping of keys']],
  ['non-string key', base('1: x\n'), ['config.yaml:4: keys must be plain names, got 1']],
  ['complex key', base('? [a]\n: 1\n'), ['config.yaml:4: keys must be plain names, got a list']],
  ['unresolved tag', base('chunk_size: !potato 1MB\n'), ['config.yaml:4: YAML syntax error: ']],
  // unknown keys
  ['misspelled key', base('chunk_szie: 1MB\n'), ['config.yaml:4: chunk_szie: unknown key; did you mean chunk_size?']],
  ['dashed key', base('blob-size-limit: 1GB\n'), ['config.yaml:4: blob-size-limit: unknown key; did you mean blob_size_limit?']],
  ['alias of a key', base('excludes: ["*.o"]\n'), ['config.yaml:4: excludes: unknown key; did you mean exclude?']],
  ['recipients alias', base('recipients: []\n'), ['config.yaml:4: recipients: unknown key; did you mean age_recipients?']],
  ['s3 key at the top', base('bucket: b\n'), ['config.yaml:4: bucket: unknown key; it belongs inside the s3: block']],
  ['unrelated key', base('favourite_colour: blue\n'), ['config.yaml:4: favourite_colour: unknown key; known keys: source_dirs, exclude,']],
  ['unknown key in s3', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  storage_class: GLACIER'), ['config.yaml:5: s3.storage_class: unknown key; known keys: endpoint, bucket,']],
  ['misspelled key in s3', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  secret_acess_key: x\n  access_key_id: y'), ['config.yaml:3: s3.secret_access_key: missing', 'config.yaml:5: s3.secret_acess_key: unknown key; did you mean secret_access_key?']],
  ['top-level key in s3', base().replace('local: {path: /srv/backup}', 's3: {bucket: b, chunk_size: 1MB}'), ['config.yaml:3: s3.chunk_size: unknown key; it is a top-level key, not part of s3:']],
  ['unknown key in local', base().replace('local: {path: /srv/backup}', 'local: {path: /srv, dir: /x}'), ['config.yaml:3: local.dir: unknown key; did you mean path?']],
  ['unknown key in object_lock', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  object_lock:\n    mode: governance\n    days: 1\n    years: 1'), ['config.yaml:8: s3.object_lock.years: unknown key; known keys: mode, days']],
  // source_dirs
  ['missing source_dirs', `age_recipient: ${R1}\nlocal: {path: /srv}\n`, ['config.yaml: source_dirs: missing (the list of absolute directories to back up)']],
  ['empty source_dirs', base().replace('[/etc, /home/user/data]', '[]'), ['config.yaml:1: source_dirs: is empty: list at least one directory to back up']],
  ['source_dirs without a value', base().replace(' [/etc, /home/user/data]', ''), ['config.yaml:1: source_dirs: has no value']],
  ['source_dirs as a string', base().replace('[/etc, /home/user/data]', '/etc'), ['config.yaml:1: source_dirs: expected a list of absolute directory paths, got "/etc" (write ["/etc"] for one)']],
  ['relative source dir', base().replace('[/etc, /home/user/data]', '\n  - /etc\n  - data'), ['config.yaml:3: source_dirs: "data" is not an absolute path']],
  ['tilde source dir', base().replace('[/etc, /home/user/data]', '[~/data]'), ['config.yaml:1: source_dirs: "~/data": "~" is not expanded; write the full path']],
  ['number in source_dirs', base().replace('[/etc, /home/user/data]', '\n  - /etc\n  - 42'), ['config.yaml:3: source_dirs: expected absolute directory paths in the list, got 42']],
  ['duplicate source dir', base().replace('[/etc, /home/user/data]', '\n  - /etc\n  - /etc/'), ['config.yaml:3: source_dirs: "/etc/" is listed twice (first on line 2)']],
  ['nested source dirs', base().replace('[/etc, /home/user/data]', '\n  - /home\n  - /home/user/data'), ['config.yaml:3: source_dirs: "/home/user/data" is inside "/home", which is also listed']],
  ['"/" with others', base().replace('[/etc, /home/user/data]', '[/, /etc]'), ['config.yaml:1: source_dirs: "/etc" is inside "/", which is also listed']],
  // exclude
  ['exclude as a string', base('exclude: "*.log"\n'), ['config.yaml:4: exclude: expected a list of patterns, got "*.log" (write ["*.log"] for one)']],
  ['bad exclude pattern', base("exclude:\n  - '*.log'\n  - '[abc'\n"), ['config.yaml:6: exclude: bad exclude pattern "[abc": unterminated character class']],
  ['empty exclude pattern', base("exclude: ['*.log', '']\n"), ['config.yaml:4: exclude: expected patterns in the list, got an empty string']],
  ['lone "!"', base("exclude: ['!']\n"), ['config.yaml:4: exclude: bad exclude pattern "!": nothing after "!"']],
  ['excluding a whole source dir', base("exclude: ['/etc/']\n"), ['config.yaml:4: exclude: "/etc/" names the whole source dir /etc; remove it from source_dirs instead']],
  // recipients
  ['no recipient', 'source_dirs: [/etc]\nlocal: {path: /srv}\n', ['config.yaml: age_recipient: missing: set age_recipient (one age1... public key), age_recipients (a list) or age_recipients_file']],
  ['malformed recipient', base().replace(R1, BAD), [`config.yaml:2: age_recipient: malformed age recipient "${BAD}": invalid checksum`]],
  ['truncated recipient', base().replace(R1, R1.slice(0, 40)), [`config.yaml:2: age_recipient: malformed age recipient "${R1.slice(0, 40)}": invalid checksum`]],
  ['not an age recipient', base().replace(R1, 'hello'), ['config.yaml:2: age_recipient: malformed age recipient "hello": expected an X25519 public key starting with "age1"']],
  ['mixed-case recipient', base().replace(R1, 'Age' + R1.slice(3)), [`config.yaml:2: age_recipient: malformed age recipient "Age${R1.slice(3)}": mixed case`]],
  ['private key pasted', base().replace(R1, 'AGE-SECRET-KEY-1QQQQ'), ['config.yaml:2: age_recipient: this is an age PRIVATE key; the config takes the public key (age1…)']],
  ['ssh recipient', base().replace(R1, '"ssh-ed25519 AAAAC3Nza me@host"'), ['config.yaml:2: age_recipient: SSH recipients are not supported']],
  ['plugin recipient', base().replace(R1, 'age1yubikey1qwertyuiop'), ['config.yaml:2: age_recipient: "age1yubikey1qwertyuiop" is an age plugin recipient']],
  ['list under age_recipient', base().replace(`age_recipient: ${R1}`, `age_recipient: [${R1}, ${R2}]`), ['config.yaml:2: age_recipient: expected one recipient; for several, use age_recipients: [age1..., age1...]']],
  ['recipient as a number', base().replace(R1, '12'), ['config.yaml:2: age_recipient: expected an age recipient (age1...), got 12']],
  ['empty age_recipients', base().replace(`age_recipient: ${R1}`, 'age_recipients: []'), ['config.yaml:2: age_recipients: is empty']],
  ['bad entry in age_recipients', base().replace(`age_recipient: ${R1}`, `age_recipients:\n  - ${R2}\n  - ${BAD}`), [`config.yaml:4: age_recipients: malformed age recipient "${BAD}": invalid checksum`]],
  ['recipients file that does not exist', base('age_recipients_file: /nonexistent/keys.txt\n'), ['config.yaml:4: age_recipients_file: cannot read /nonexistent/keys.txt: no such file']],
  ['recipients file with a tilde', base('age_recipients_file: ~/keys.txt\n'), ['config.yaml:4: age_recipients_file: "~/keys.txt": "~" is not expanded']],
  // storage
  ['neither s3 nor local', `source_dirs: [/etc]\nage_recipient: ${R1}\n`, ['config.yaml: no store: add an s3: block (bucket, endpoint, ...) or a local: block (path)']],
  ['both s3 and local', base('s3: {bucket: b}\n'), ['config.yaml:4: s3: both s3: and local: are set; a config writes to exactly one store']],
  ['empty local block', base().replace('local: {path: /srv/backup}', 'local:'), ['config.yaml:3: local: expected a mapping of keys (path, prefix), got nothing']],
  ['local as a string', base().replace('local: {path: /srv/backup}', 'local: /srv/backup'), ['config.yaml:3: local: expected a mapping of keys (path, prefix), got "/srv/backup"']],
  ['local without path', base().replace('local: {path: /srv/backup}', 'local: {prefix: a/}'), ['config.yaml:3: local.path: missing (the absolute directory of the store)']],
  ['relative local path', base().replace('/srv/backup', 'srv/backup'), ['config.yaml:3: local.path: "srv/backup" is not an absolute path']],
  ['prefix starting with "/"', base().replace('{path: /srv/backup}', '{path: /srv, prefix: /h1/}'), ['config.yaml:3: local.prefix: "/h1/" must not start with "/"']],
  ['prefix with ".."', base().replace('{path: /srv/backup}', '{path: /srv, prefix: a/../b}'), ['config.yaml:3: local.prefix: "a/../b" must not contain "." or ".." segments']],
  ['prefix with "//"', base().replace('{path: /srv/backup}', '{path: /srv, prefix: a//b}'), ['config.yaml:3: local.prefix: "a//b" contains an empty segment']],
  ['s3 without bucket', base().replace('local: {path: /srv/backup}', 's3: {region: x}'), ['config.yaml:3: s3.bucket: missing (the bucket name)']],
  ['s3:// bucket', base().replace('local: {path: /srv/backup}', 's3: {bucket: "s3://b/p"}'), ['config.yaml:3: s3.bucket: "s3://b/p": write the bare bucket name, and the key prefix under prefix:']],
  ['bucket with a slash', base().replace('local: {path: /srv/backup}', 's3: {bucket: b/p}'), ['config.yaml:3: s3.bucket: "b/p" is not a bucket name']],
  ['bad endpoint', base().replace('local: {path: /srv/backup}', 's3: {bucket: b, endpoint: "minio:9000"}'), ['config.yaml:3: s3.endpoint: "minio:9000" is not an http:// or https:// URL']],
  ['access key without secret', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  access_key_id: AK'), ['config.yaml:3: s3.secret_access_key: missing: access_key_id and secret_access_key go together']],
  ['session token alone', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  session_token: T'), ['config.yaml:5: s3.session_token: needs access_key_id and secret_access_key']],
  ['one_file_system: yes', base('one_file_system: yes\n'), ['config.yaml:4: one_file_system: expected true or false, got "yes"']],
  ['one_file_system without a value', base('one_file_system:\n'), ['config.yaml:4: one_file_system: has no value']],
  ['one-file-system spelled as the flag', base('one-file-system: true\n'), ['config.yaml:4: one-file-system: unknown key; did you mean one_file_system?']],
  ['force_path_style: yes', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  force_path_style: yes'), ['config.yaml:5: s3.force_path_style: expected true or false, got "yes"']],
  ['conditional_writes: maybe', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  conditional_writes: maybe'), ['config.yaml:5: s3.conditional_writes: expected auto, true or false, got "maybe"']],
  ['conditional_writes: 1', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  conditional_writes: 1'), ['config.yaml:5: s3.conditional_writes: expected auto, true or false, got 1']],
  ['object_lock bad mode', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  object_lock: {mode: strict, days: 3}'), ['config.yaml:5: s3.object_lock.mode: expected governance or compliance, got "strict"']],
  ['object_lock bad days', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  object_lock:\n    mode: governance\n    days: 0'), ['config.yaml:7: s3.object_lock.days: 0 is out of range (1–36500)']],
  ['object_lock fractional days', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  object_lock: {mode: governance, days: 1.5}'), ['config.yaml:5: s3.object_lock.days: expected a whole number from 1 to 36500, got 1.5']],
  ['object_lock missing keys', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  object_lock: {}'), ['config.yaml:5: s3.object_lock.mode: missing (governance or compliance)', 'config.yaml:5: s3.object_lock.days: missing']],
  ['object_lock as a string', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  object_lock: governance'), ['config.yaml:5: s3.object_lock: expected a mapping of keys (mode, days), got "governance"']],
  ['tiny part_size', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  part_size: 1MiB'), ["config.yaml:5: s3.part_size: 1 MiB is outside S3's part size range (5 MiB–5 GiB)"]],
  ['tiny multipart_threshold', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  multipart_threshold: 1MB'), ["config.yaml:5: s3.multipart_threshold: 1000000 B is below S3's minimum part size (5 MiB)"]],
  ['bad concurrency', base().replace('local: {path: /srv/backup}', 's3:\n  bucket: b\n  concurrency: 0'), ['config.yaml:5: s3.concurrency: 0 is out of range (1–256)']],
  // sizes and durations
  ['unparseable chunk_size', base('chunk_size: 10 potatoes\n'), ['config.yaml:4: chunk_size: cannot parse size "10 potatoes": unknown unit "potatoes"']],
  ['ambiguous chunk_size', base('chunk_size: 10M\n'), ['config.yaml:4: chunk_size: cannot parse size "10M": unit "M" is ambiguous, write MB (10^6) or MiB (2^20)']],
  ['chunk_size as a list', base('chunk_size: [1]\n'), ['config.yaml:4: chunk_size: expected a size like "10MB" or "512KiB", got a list']],
  ['chunk_size too small', base('chunk_size: 4KiB\n'), ['config.yaml:4: chunk_size: 4 KiB is outside the supported range (64 KiB–64 MiB)']],
  ['chunk_size too large', base('chunk_size: 1GiB\n'), ['config.yaml:4: chunk_size: 1 GiB is outside the supported range (64 KiB–64 MiB)']],
  ['blob_size_limit below the largest chunk', base('chunk_size: 16MiB\nblob_size_limit: 32MiB\n'), ['config.yaml:5: blob_size_limit: blob_size_limit (32 MiB) must hold the largest chunk, 4 × chunk_size = 64 MiB']],
  ['default blob_size_limit vs chunk_size', base('chunk_size: 64MiB\nblob_size_limit: 100MB\n'), ['config.yaml:5: blob_size_limit: blob_size_limit (100000000 B) must hold the largest chunk']],
  ['huge blob_size_limit', base('blob_size_limit: 6TiB\n'), ["config.yaml:4: blob_size_limit: 6 TiB is more than S3's largest object (5 TiB)"]],
  ['negative size', base('blob_size_limit: -1\n'), ['config.yaml:4: blob_size_limit: cannot parse size -1: expected a whole, non-negative number of bytes']],
  ['bad duration', base('backup_interval: soon\n'), ['config.yaml:4: backup_interval: cannot parse duration "soon"']],
  ['duration without unit', base('full_scan_interval: 3600\n'), ['config.yaml:4: full_scan_interval: cannot parse duration 3600: a number needs a unit, e.g. "3600s"']],
  ['month duration', base('min_time_between_run: 1M\n'), ['config.yaml:4: min_time_between_run: cannot parse duration "1M": unknown unit "M" (months and years vary in length: use d or w)']],
  ['zero backup_interval', base('backup_interval: 0s\n'), ['config.yaml:4: backup_interval: must be at least 1s']],
  ['duration as a boolean', base('backup_interval: true\n'), ['config.yaml:4: backup_interval: expected a duration like "15m", "1h" or "1h30m", got true']],
  // other keys
  ['relative index_path', base('index_path: index.sqlite\n'), ['config.yaml:4: index_path: "index.sqlite" is not an absolute path']],
  ['index_path "/"', base('index_path: /\n'), ['config.yaml:4: index_path: must name a file, not "/"']],
  ['index_path without a value', base('index_path:\n'), ['config.yaml:4: index_path: has no value']],
  ['index_prefix under blobs/', base('index_prefix: blobs/idx\n'), ['config.yaml:4: index_prefix: "blobs/idx" is inside blobs/, where prune deletes unreferenced objects']],
  ['empty index_prefix', base('index_prefix: ""\n'), ['config.yaml:4: index_prefix: expected a key prefix like "index/", got an empty string']],
  ['compression_level out of range', base('compression_level: 22\n'), ['config.yaml:4: compression_level: 22 is out of range (1–19)']],
  ['compression_level as a word', base('compression_level: fast\n'), ['config.yaml:4: compression_level: expected a whole number from 1 to 19, got "fast"']],
  ['hostname with a slash', base('hostname: a/b\n'), ['config.yaml:4: hostname: "a/b" cannot be used in snapshot ids']],
  ['hostname with a space', base('hostname: "my host"\n'), ['config.yaml:4: hostname: "my host" cannot be used in snapshot ids']],
  // several problems at once, in line order
  ['several problems', base('chunk_size: 1X\nbogus: 1\nindex_path: rel\n').replace(R1, BAD), [
    'config.yaml:2: age_recipient: malformed age recipient',
    'config.yaml:4: chunk_size: cannot parse size "1X"',
    'config.yaml:5: bogus: unknown key',
    'config.yaml:6: index_path: "rel" is not an absolute path',
  ]],
];

describe('parseConfig: errors name the file, line and key', () => {
  it.each(cases)('%s', (_what, text, expected) => {
    const lines = errorsOf(text);
    expect(lines.length, lines.join('\n')).toBe(expected.length);
    expected.forEach((prefix, i) => {
      expect(lines[i]!.startsWith(prefix), `line ${i}: ${lines[i]!}\nexpected to start with: ${prefix}`).toBe(true);
    });
  });

  it('throws a UsageError with exit code 2 and structured issues', () => {
    let error: unknown;
    try {
      parse(base('chunk_size: 10 potatoes\n'));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(UsageError);
    expect((error as ConfigError).exitCode).toBe(ExitCode.USAGE);
    expect((error as ConfigError).issues).toEqual([
      expect.objectContaining({ source: 'config.yaml', line: 4, key: 'chunk_size' }),
    ]);
  });

  it("rejects this machine's host name when it cannot be used in snapshot ids", () => {
    expect(errorsOf(base(), { hostname: 'bad host' })).toEqual([
      'config.yaml: hostname: this machine\'s host name "bad host" cannot be used in snapshot ids; set hostname: in the config',
    ]);
    expect(parse(base('hostname: ok\n'), { hostname: 'bad host' }).hostname).toBe('ok');
  });

  it('reports problems in a recipients file under its own name and line', () => {
    const lines = errorsOf(base('age_recipients_file: keys.txt\n'), {
      baseDir: '/cfg',
      readFile: () => `# keys\n${R2}\n${BAD}\nAGE-SECRET-KEY-1ABC\n`,
    });
    expect(lines).toEqual([
      'config.yaml:4: age_recipients_file: /cfg/keys.txt has 2 problems (listed with its name)',
      `/cfg/keys.txt:3: malformed age recipient "${BAD}": invalid checksum`,
      '/cfg/keys.txt:4: this is an age PRIVATE key; the config takes the public key (age1…), and the private key must never be on the machine being backed up',
    ]);
    // The private key itself is never echoed.
    expect(lines.join('\n')).not.toContain('AGE-SECRET-KEY-1ABC');
  });

  it('rejects an empty recipients file', () => {
    expect(errorsOf(base('age_recipients_file: k\n'), { baseDir: '/cfg', readFile: () => '# none yet\n\n' })).toEqual([
      'config.yaml:4: age_recipients_file: /cfg/k has a problem (listed with its name)',
      '/cfg/k: no recipients in the file',
    ]);
  });
});

describe('docs/CONFIG.md', () => {
  it('its example configs are valid', () => {
    const doc = readFileSync(new URL('../../docs/CONFIG.md', import.meta.url), 'utf8');
    const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    for (const block of blocks) expect(() => parse(block)).not.toThrow();
    expect(parse(blocks[0]!).storage).toMatchObject({ type: 's3', bucket: 'backups', prefix: 'host1/' });
  });
});

describe('loadConfig', () => {
  let cleanup: (() => void) | undefined;
  afterEach(() => {
    cleanup?.();
    cleanup = undefined;
  });

  it('reads a real file with a recipients file next to it', () => {
    const tmp = makeTempDir('vaultik-config-');
    cleanup = tmp.cleanup;
    mkdirSync(join(tmp.dir, 'etc'));
    writeFileSync(join(tmp.dir, 'etc', 'recipients.txt'), `# made by age-keygen\n${R2}\n${R3}\n`);
    const path = join(tmp.dir, 'etc', 'vaultik.yaml');
    writeFileSync(path, base('age_recipients_file: recipients.txt\nchunk_size: 1MiB\n'));
    const c = loadConfig(path, { hostname: 'h', uid: 0 });
    expect(c.recipients).toEqual([R1, R2, R3]);
    expect(c.chunkSize).toBe(1024 * 1024);
    expect(c.sourcePath).toBe(path);
    expect(c.indexPath).toBe('/var/lib/vaultik/index.sqlite');
  });

  it('names the file as given and makes sourcePath absolute', () => {
    const tmp = makeTempDir('vaultik-config-');
    cleanup = tmp.cleanup;
    writeFileSync(join(tmp.dir, 'v.yaml'), base('chunk_size: 10 potatoes\n'));
    const cwd = process.cwd();
    process.chdir(tmp.dir);
    try {
      expect(() => loadConfig('v.yaml', OPTIONS)).toThrow(/^v\.yaml:4: chunk_size: cannot parse size "10 potatoes"/);
      writeFileSync(join(tmp.dir, 'ok.yaml'), base());
      expect(loadConfig('ok.yaml', { hostname: 'h' }).sourcePath).toBe(join(tmp.dir, 'ok.yaml'));
    } finally {
      process.chdir(cwd);
    }
  });

  it('reports a missing or unreadable file as a ConfigError', () => {
    const tmp = makeTempDir('vaultik-config-');
    cleanup = tmp.cleanup;
    expect(() => loadConfig(join(tmp.dir, 'nope.yaml'))).toThrow(ConfigError);
    expect(() => loadConfig(join(tmp.dir, 'nope.yaml'))).toThrow(`${join(tmp.dir, 'nope.yaml')}: cannot read the config file: no such file`);
    expect(() => loadConfig(tmp.dir)).toThrow('cannot read the config file: is a directory');
    if (process.getuid?.() !== 0) {
      const locked = join(tmp.dir, 'locked.yaml');
      writeFileSync(locked, base());
      chmodSync(locked, 0o000);
      expect(() => loadConfig(locked)).toThrow('cannot read the config file: permission denied');
    }
  });

  it('resolves a relative recipients file against the config file, not the working directory', () => {
    const tmp = makeTempDir('vaultik-config-');
    cleanup = tmp.cleanup;
    mkdirSync(join(tmp.dir, 'conf'));
    writeFileSync(join(tmp.dir, 'conf', 'keys'), `${R2}\n`);
    writeFileSync(join(tmp.dir, 'conf', 'c.yaml'), base('age_recipients_file: ./keys\n'));
    expect(loadConfig(join(tmp.dir, 'conf', 'c.yaml'), { hostname: 'h' }).recipients).toEqual([R1, R2]);
  });
});
