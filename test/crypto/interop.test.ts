/**
 * Round trips with the reference tools: the `age` CLI (Go) and the `age-encryption` npm package
 * (typage), both directions, for sizes around the 64 KiB segment boundary, a 5 MiB file and
 * several recipients.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Decrypter, Encrypter } from 'age-encryption';
import {
  AgeEncryptor,
  AgeRandomAccess,
  bufferReader,
  ciphertextSize,
  createDecryptStream,
  createEncryptStream,
  decrypt,
  encrypt,
  generateKeyPair,
  parseIdentity,
  parseIdentityFile,
  parseRecipient,
  plaintextSize,
} from '../../src/crypto/index.js';
import { runTool } from '../helpers/tools.js';
import { makeTempDir } from '../helpers/tmp.js';

const tmp = makeTempDir();
afterAll(tmp.cleanup);

const SIZES = [0, 1, 65535, 65536, 65537, 5 * 1024 * 1024];
const kp = generateKeyPair();
const keyFile = join(tmp.dir, 'key.txt');
writeFileSync(keyFile, kp.identity + '\n');
const identity = parseIdentity(kp.identity);
const recipient = parseRecipient(kp.recipient);

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Splits `b` into pieces of pseudo-random sizes (0..100 KiB). */
function pieces(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  let seed = b.length + 1;
  while (pos < b.length) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const n = seed % 100_000;
    out.push(b.subarray(pos, pos + n));
    pos += n;
  }
  return out;
}

function headerLengthOf(file: Buffer): number {
  return file.indexOf('\n---') + file.subarray(file.indexOf('\n---') + 1).indexOf('\n') + 2;
}

describe('age interop', () => {
  for (const size of SIZES) {
    describe(`${size} bytes`, () => {
      const plain = randomBytes(size);

      it('vaultik → age CLI and typage; sizes match the formula', async () => {
        const file = encrypt(plain, [recipient]);
        expect(runTool('age', ['-d', '-i', keyFile], file).equals(plain)).toBe(true);
        const d = new Decrypter();
        d.addIdentity(kp.identity);
        expect(Buffer.from(await d.decrypt(file)).equals(plain)).toBe(true);
        const h = headerLengthOf(file);
        expect(file.length).toBe(ciphertextSize(size, h));
        expect(plaintextSize(file.length, h)).toBe(size);
      });

      it('vaultik streaming encryption (odd pieces) → age CLI', async () => {
        const enc = createEncryptStream([recipient]);
        const [file] = await Promise.all([collect(enc), pipeline(Readable.from(pieces(plain)), enc)]);
        expect(runTool('age', ['-d', '-i', keyFile], file).equals(plain)).toBe(true);
      });

      it('age CLI → vaultik whole, streamed and random access', async () => {
        const file = runTool('age', ['-r', kp.recipient], plain);
        expect(decrypt(file, [identity]).equals(plain)).toBe(true);
        const dec = createDecryptStream([identity]);
        const [out] = await Promise.all([collect(dec), pipeline(Readable.from(pieces(file)), dec)]);
        expect(out.equals(plain)).toBe(true);
        const ra = await AgeRandomAccess.open(bufferReader(file), file.length, [identity]);
        expect(ra.plaintextSize).toBe(size);
        expect((await ra.read(0, size)).equals(plain)).toBe(true);
      });

      it('typage → vaultik', async () => {
        const e = new Encrypter();
        e.addRecipient(kp.recipient);
        const file = Buffer.from(await e.encrypt(plain));
        expect(decrypt(file, [identity]).equals(plain)).toBe(true);
      });
    });
  }

  it('multi-recipient files, both ways', async () => {
    const cliKeyFile = join(tmp.dir, 'cli-key.txt');
    runTool('age-keygen', ['-o', cliKeyFile]);
    const cliId = parseIdentityFile(readFileSync(cliKeyFile, 'utf8'))[0]!;
    const others = [generateKeyPair(), generateKeyPair()];
    const plain = randomBytes(200_000);
    const recipients = [recipient, cliId.recipient, ...others.map((o) => parseRecipient(o.recipient))];

    const file = encrypt(plain, recipients);
    expect(runTool('age', ['-d', '-i', keyFile], file).equals(plain)).toBe(true);
    expect(runTool('age', ['-d', '-i', cliKeyFile], file).equals(plain)).toBe(true);
    for (const o of others) {
      const d = new Decrypter();
      d.addIdentity(o.identity);
      expect(Buffer.from(await d.decrypt(file)).equals(plain)).toBe(true);
      expect(decrypt(file, [parseIdentity(o.identity)]).equals(plain)).toBe(true);
    }

    const args = recipients.flatMap((r) => ['-r', r.toString()]);
    const fromCli = runTool('age', args, plain);
    for (const id of [identity, cliId, ...others.map((o) => parseIdentity(o.identity))]) {
      expect(decrypt(fromCli, [id]).equals(plain)).toBe(true);
    }
    // An identity list where only the last matches, as in a multi-key identity file.
    const stranger = parseIdentity(generateKeyPair().identity);
    expect(decrypt(fromCli, [stranger, cliId]).equals(plain)).toBe(true);
    expect(() => decrypt(fromCli, [stranger])).toThrow(expect.objectContaining({ kind: 'no-match' }) as Error);
  });

  it('the encryptor holds at most one segment and outputs the header first', () => {
    const e = new AgeEncryptor([recipient]);
    const first = e.update(Buffer.alloc(10));
    expect(first).toHaveLength(1);
    expect(first[0]!.toString('latin1', 0, 22)).toBe('age-encryption.org/v1\n');
    // 10 + 65536 bytes: the first full segment is sealed only once data beyond it exists.
    expect(e.update(Buffer.alloc(65526))).toHaveLength(0);
    expect(e.update(Buffer.alloc(1)).reduce((n, b) => n + b.length, 0)).toBe(65536 + 16);
    expect(e.plaintextSize).toBe(65537);
    const rest = e.final();
    expect(rest.length).toBe(1 + 16);
    expect(e.ciphertextSize).toBe(e.headerLength + 16 + 65537 + 32);
  });
});
