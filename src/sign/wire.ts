/**
 * The SSH wire encoding (RFC 4251 section 5): uint32 big-endian, and `string` as a uint32
 * length followed by that many bytes. Keys, signatures and the SSHSIG blob are all built of it.
 */

/** What WireReader throws: the data is not the SSH structure expected. */
export class WireError extends Error {}

/** A cursor over SSH wire data. Every read throws WireError with a short reason on a short buffer. */
export class WireReader {
  private pos = 0;

  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  bytes(n: number): Buffer {
    if (n > this.remaining) throw new WireError('truncated');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  uint32(): number {
    return this.bytes(4).readUInt32BE(0);
  }

  string(): Buffer {
    return this.bytes(this.uint32());
  }

  /** A string that must be printable ASCII (a key type, a cipher or hash name). */
  text(): string {
    const b = this.string();
    if (!b.every((c) => c >= 0x20 && c < 0x7f)) throw new WireError('a name holds non-printable bytes');
    return b.toString('latin1');
  }

  /** @throws Error when bytes are left over. */
  end(): void {
    if (this.remaining !== 0) throw new WireError(`${this.remaining} trailing bytes`);
  }
}

export function wireUint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

export function wireString(data: Uint8Array | string): Buffer {
  const b = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
  return Buffer.concat([wireUint32(b.length), b]);
}

const BASE64_PADDED = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Decodes padded standard base64 as OpenSSH writes it (keys, armor), strictly: Buffer.from
 * would silently skip foreign characters and accept non-canonical trailing bits.
 * @returns null when `s` is not canonical padded base64.
 */
export function decodeBase64Padded(s: string): Buffer | null {
  if (s.length % 4 !== 0 || !BASE64_PADDED.test(s)) return null;
  const bytes = Buffer.from(s, 'base64');
  return bytes.toString('base64') === s ? bytes : null;
}
