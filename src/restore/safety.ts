/**
 * What a restore withholds from its target when the snapshot is not to be trusted with it:
 * `--no-owner`, `--no-devices`, `--no-specials`, `--no-setuid` (rsync's and tar's names). Anyone
 * with the recipient can write a snapshot that restores cleanly (docs/SECURITY.md,
 * "Authenticity"), and as root a restore recreates device nodes, setuid files and foreign owners
 * exactly as the metadata says. Withheld items are the operator's choice, not errors: they are
 * counted (RestoreSummary.withheld), never warned about, and leave the exit code alone.
 */
import type { Entry } from '../snapshot/types.js';

export interface RestoreSafety {
  /**
   * Do not restore owners: entries belong to the restoring user (as root: to root). A setuid
   * (setgid) bit recorded for another user (group) than the restoring one is cleared with it,
   * as chown would: kept, it would run the file as the restoring user.
   */
  noOwner?: boolean;
  /** Do not create character and block device nodes. */
  noDevices?: boolean;
  /** Do not create FIFOs (sockets are never created). */
  noSpecials?: boolean;
  /** Clear the setuid and setgid bits of every entry; the sticky bit and the rest stay. */
  noSetuid?: boolean;
}

/** How many selected entries each option changed or left out. */
export interface Withheld {
  /** Device nodes not created (--no-devices). */
  devices: number;
  /** FIFOs and sockets not created (--no-specials). */
  specials: number;
  /** Entries restored without setuid/setgid bits they were recorded with (--no-setuid, --no-owner). */
  setuid: number;
  /** Entries recorded with another owner or group than the restoring user's, left to it (--no-owner). */
  owners: number;
}

const SETID = 0o6000;

export class SafetyPolicy {
  readonly withheld: Withheld = { devices: 0, specials: 0, setuid: 0, owners: 0 };
  private readonly uid: number;
  private readonly gid: number;

  constructor(
    private readonly safety: RestoreSafety = {},
    /** The restoring user (injectable for tests). */
    ids: { uid: number; gid: number } = { uid: process.getuid?.() ?? -1, gid: process.getgid?.() ?? -1 },
  ) {
    this.uid = ids.uid;
    this.gid = ids.gid;
  }

  /** Which count an entry that is not to be created at all goes to, or undefined. */
  skips(e: Entry): 'devices' | 'specials' | undefined {
    if (this.safety.noDevices && (e.type === 'chardev' || e.type === 'blockdev')) return 'devices';
    if (this.safety.noSpecials && (e.type === 'fifo' || e.type === 'socket')) return 'specials';
    return undefined;
  }

  /** The mode to restore for `e` (pure: every path an entry's metadata takes calls it). */
  mode(e: Entry): number {
    let mode = e.mode;
    if (this.safety.noSetuid) mode &= ~SETID;
    if (this.safety.noOwner) {
      if (e.uid !== this.uid) mode &= ~0o4000;
      if (e.gid !== this.gid) mode &= ~0o2000;
    }
    return mode;
  }

  /** `e` as restored: the same object when nothing changes. */
  apply(e: Entry): Entry {
    const mode = this.mode(e);
    return mode === e.mode ? e : { ...e, mode };
  }

  /** Counts what is withheld from one selected entry that is restored (once per entry). */
  count(e: Entry): void {
    if (e.type !== 'symlink' && (e.mode & SETID) !== (this.mode(e) & SETID)) this.withheld.setuid++;
    if (this.safety.noOwner && (e.uid !== this.uid || e.gid !== this.gid)) this.withheld.owners++;
  }

  /** Counts an entry that `skips` left out. */
  countSkipped(kind: 'devices' | 'specials'): void {
    this.withheld[kind]++;
  }
}
