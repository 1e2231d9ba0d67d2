/**
 * Which mounted file systems a walk descends into: the source walker's and the daemon's shared
 * rule for a directory on another device than its source dir.
 *
 * - **Pseudo file systems** (proc, sysfs, devtmpfs, cgroup, …: `PSEUDO_FS_TYPES`) hold no data of
 *   their own, only views of the kernel, and some of their files block or never end when read.
 *   A directory where one is mounted below a source dir is recorded (empty: its own entry, not
 *   its contents) and never descended into. A source dir that lies on one itself (source
 *   `/proc/sys/kernel`) is walked: the user named it; mounts of *other* pseudo file systems
 *   below it are still skipped.
 * - **`one_file_system`**: no directory on another device than its source dir is descended
 *   into, as restic's `--one-file-system` and borg's `--one-file-system`; each mount point is
 *   recorded, empty. Each source dir is its own reference.
 *
 * The type is found by device, not by path: /proc/self/mountinfo maps each mount's
 * major:minor (what stat's st_dev encodes) to its type name, which also tells devtmpfs from
 * tmpfs (both report TMPFS_MAGIC to statfs). A device mountinfo does not list (a btrfs
 * subvolume, a mount made after mountinfo was read and still missing after a second read, a
 * system without /proc) falls back to statfs's magic number. autofs is not a pseudo file system:
 * it mounts a real one (often over the network) where it is entered, and is walked like it.
 *
 * Cost: a check is made only for a directory whose st_dev differs from its source dir's, and
 * each device is classified once per walk (one mountinfo read, at most one statfs per device).
 */
import { readFileSync, statfsSync } from 'node:fs';

/** mountinfo type names of the pseudo file systems a walk does not descend into. */
export const PSEUDO_FS_TYPES: ReadonlySet<string> = new Set([
  'proc',
  'sysfs',
  'devtmpfs',
  'devpts',
  'cgroup',
  'cgroup2',
  'debugfs',
  'tracefs',
  'securityfs',
  'pstore',
  'bpf',
  'configfs',
  'fusectl',
  'mqueue',
  'hugetlbfs',
  'binfmt_misc',
  'nsfs',
  'efivarfs',
  'selinuxfs',
  'smackfs',
  'rpc_pipefs',
  'nfsd',
]);

/**
 * statfs f_type of pseudo file systems, for devices mountinfo does not list. From
 * /usr/include/linux/magic.h, each but efivarfs (not mountable here) also checked against a
 * real mount's statfs; devtmpfs reports TMPFS_MAGIC and cannot be told from tmpfs this way.
 */
export const PSEUDO_FS_MAGIC: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'proc'], // PROC_SUPER_MAGIC
  [0x62656572, 'sysfs'], // SYSFS_MAGIC
  [0x1cd1, 'devpts'], // DEVPTS_SUPER_MAGIC
  [0x27e0eb, 'cgroup'], // CGROUP_SUPER_MAGIC
  [0x63677270, 'cgroup2'], // CGROUP2_SUPER_MAGIC
  [0x64626720, 'debugfs'], // DEBUGFS_MAGIC
  [0x74726163, 'tracefs'], // TRACEFS_MAGIC
  [0x73636673, 'securityfs'], // SECURITYFS_MAGIC
  [0x6165676c, 'pstore'], // PSTOREFS_MAGIC
  [0xcafe4a11, 'bpf'], // BPF_FS_MAGIC
  [0x958458f6, 'hugetlbfs'], // HUGETLBFS_MAGIC
  [0x42494e4d, 'binfmt_misc'], // BINFMTFS_MAGIC
  [0x6e736673, 'nsfs'], // NSFS_MAGIC
  [0xde5e81e4, 'efivarfs'], // EFIVARFS_MAGIC
  [0xf97cff8c, 'selinuxfs'], // SELINUX_MAGIC
  [0x43415d53, 'smackfs'], // SMACK_MAGIC
  [0x19800202, 'mqueue'], // MQUEUE_MAGIC (ipc/mqueue.c; checked on a real mount)
  [0x65735543, 'fusectl'], // FUSE_CTL_SUPER_MAGIC (fs/fuse; checked on a real mount)
]);

/** "major:minor" of a st_dev as glibc encodes it (gnu_dev_major/minor; libuv uses makedev). */
export function deviceNumbers(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n);
  const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n);
  return `${major}:${minor}`;
}

/** major:minor → type name of every mount in /proc/self/mountinfo (empty when it cannot be read). */
export function readMountTypes(path = '/proc/self/mountinfo'): Map<string, string> {
  const types = new Map<string, string>();
  let text: string;
  try {
    text = readFileSync(path, 'latin1');
  } catch {
    return types;
  }
  // "36 35 98:0 /root /mnt/point rw,noatime master:1 - ext4 /dev/root rw": the fields before
  // " - " vary in number (optional tags); the type follows it.
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const sep = fields.indexOf('-', 6);
    const dev = fields[2];
    const type = sep > 0 ? fields[sep + 1] : undefined;
    if (dev !== undefined && type !== undefined && !types.has(dev)) types.set(dev, type);
  }
  return types;
}

/** What a walk does with a directory on another device than its source dir. */
export type MountDecision = 'descend' | 'other-fs' | 'pseudo';

/** The rule above, with one classification per device; one instance per walk or scan. */
export class MountFilter {
  private mountTypes: Map<string, string> | undefined;
  private readonly pseudo = new Map<bigint, boolean>();

  constructor(private readonly options: { oneFileSystem?: boolean; mountinfo?: string } = {}) {}

  /**
   * Whether to descend into a directory (`abs`, on device `dev`) of a source dir on device
   * `rootDev`. Synchronous: a mountinfo read or a statfs, once per device.
   */
  decide(abs: Buffer | string, dev: bigint, rootDev: bigint): MountDecision {
    if (dev === rootDev) return 'descend';
    if (this.options.oneFileSystem === true) return 'other-fs';
    return this.isPseudo(abs, dev) ? 'pseudo' : 'descend';
  }

  /** The file system type name of `dev` (mountinfo's, else the pseudo name of statfs's magic). */
  private isPseudo(abs: Buffer | string, dev: bigint): boolean {
    const known = this.pseudo.get(dev);
    if (known !== undefined) return known;
    const key = deviceNumbers(dev);
    let type = this.typeOf(key);
    if (type === undefined) {
      this.mountTypes = undefined; // mounted after the last read? read it again, once per device
      type = this.typeOf(key);
    }
    if (type === undefined) {
      try {
        type = PSEUDO_FS_MAGIC.get(Number(statfsSync(abs).type));
      } catch {
        type = undefined; // gone: the walk's own calls report it
      }
    }
    const pseudo = type !== undefined && PSEUDO_FS_TYPES.has(type);
    this.pseudo.set(dev, pseudo);
    return pseudo;
  }

  private typeOf(key: string): string | undefined {
    this.mountTypes ??= readMountTypes(this.options.mountinfo);
    return this.mountTypes.get(key);
  }
}
