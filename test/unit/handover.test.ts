import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseMountCommandLine } from '../../src/mount/cmdline';
import { parseRequest } from '../../src/mount/handover';

const request = (fields: Record<string, unknown>): Buffer => Buffer.from(JSON.stringify({ op: 'mount', mountpoint: '/m', lowers: ['/l'], ...fields }));

/** What the mount daemon takes from a helper, checked field by field before anything is served. */
describe('mount requests as the daemon parses them', () => {
  it('takes tweaks and the options not applied, as the command line made them', () => {
    const parsed = parseRequest(request({ tweaks: { squashUid: 1000, squashGid: 0, staticNlink: true, volatile: false, maxSize: 1 << 20 }, notApplied: ['timeout=5'] }));
    assert.deepEqual(parsed, { op: 'mount', mountpoint: '/m', lowers: ['/l'], tweaks: { squashUid: 1000, squashGid: 0, staticNlink: true, volatile: false, maxSize: 1 << 20 }, notApplied: ['timeout=5'] });
  });

  it('refuses, in one line naming the field, a tweak of the wrong type or unknown, and options that are not strings', () => {
    for (const [fields, message] of [
      [{ tweaks: { squashUid: -1 } }, 'request: squashUid must be a uid or gid'],
      [{ tweaks: { squashGid: 2 ** 32 } }, 'request: squashGid must be a uid or gid'],
      [{ tweaks: { squashUid: '0' } }, 'request: squashUid must be a uid or gid'],
      [{ tweaks: { volatile: 'yes' } }, 'request: volatile must be true or false'],
      [{ tweaks: { writeback: true } }, 'request: unknown tweak "writeback"'],
      [{ tweaks: { maxSize: 0 } }, 'request: maxSize must be a size in bytes'],
      [{ tweaks: { maxSize: 1.5 } }, 'request: maxSize must be a size in bytes'],
      [{ tweaks: { maxSize: '10' } }, 'request: maxSize must be a size in bytes'],
      [{ tweaks: [] }, 'request: tweaks must be an object'],
      [{ tweaks: null }, 'request: tweaks must be an object'],
      [{ notApplied: [1] }, 'request: notApplied must be a list of options'],
    ] as const) {
      assert.throws(() => parseRequest(request(fields)), { message }, JSON.stringify(fields));
    }
  });
});

describe('max_size=, on the command line', () => {
  it('limits the upper layer to a number of bytes, and is refused in one line otherwise', () => {
    assert.deepEqual(parseMountCommandLine(['-o', 'lowerdir=/l,upperdir=/u,workdir=/w,max_size=1048576', '/m']).tweaks, { maxSize: 1048576 });
    for (const [options, message] of [
      ['lowerdir=/l,upperdir=/u,workdir=/w,max_size=0', '-o max_size=0: not a size in bytes'],
      ['lowerdir=/l,upperdir=/u,workdir=/w,max_size=1k', '-o max_size=1k: not a size in bytes'],
      ['lowerdir=/l,upperdir=/u,workdir=/w,max_size=99999999999999999', '-o max_size=99999999999999999: not a size in bytes'],
      ['lowerdir=/l,max_size=10', '-o max_size= limits the upper layer: it needs upperdir='],
    ] as const) {
      assert.throws(() => parseMountCommandLine(['-o', options, '/m']), { message }, options);
    }
  });
});
