import { invalidArgument } from '../errors';

/**
 * fuse-overlayfs's uidmapping/gidmapping: `FROM:TO:COUNT[:FROM:TO:COUNT…]`
 * maps ids FROM… as the mount shows them to ids TO… as the layers store
 * them. Ids outside every range show as the overflow id 65534 and cannot be
 * stored.
 */
export interface IdMap {
  /** Stored (on disk) → shown (through the mount). */
  shown(stored: number): number;
  /** Shown → stored; undefined when the id has no mapping. */
  stored(shown: number): number | undefined;
}

const OVERFLOW_ID = 65534;

export const IDENTITY: IdMap = { shown: (id) => id, stored: (id) => id };

export function parseIdMap(option: string, spec: string): IdMap {
  const parts = spec.split(':').map((p) => (/^[0-9]+$/.test(p) ? Number(p) : NaN));
  if (parts.length === 0 || parts.length % 3 !== 0 || parts.some((n) => Number.isNaN(n))) {
    throw invalidArgument(`-o ${option}=${spec}: expected FROM:TO:COUNT[:FROM:TO:COUNT…]`);
  }
  const ranges: { from: number; to: number; count: number }[] = [];
  for (let i = 0; i < parts.length; i += 3) ranges.push({ from: parts[i]!, to: parts[i + 1]!, count: parts[i + 2]! });
  return {
    shown: (id) => {
      const r = ranges.find((m) => id >= m.to && id < m.to + m.count);
      return r === undefined ? OVERFLOW_ID : r.from + (id - r.to);
    },
    stored: (id) => {
      const r = ranges.find((m) => id >= m.from && id < m.from + m.count);
      return r === undefined ? undefined : r.to + (id - r.from);
    },
  };
}
