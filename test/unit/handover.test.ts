import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRequest } from '../../src/mount/handover';

const request = (fields: Record<string, unknown>): Buffer => Buffer.from(JSON.stringify({ op: 'mount', mountpoint: '/m', lowers: ['/l'], ...fields }));

/** What the mount daemon takes from a helper, checked field by field before anything is served. */
describe('mount requests as the daemon parses them', () => {
  it('takes tweaks and the options not applied, as the command line made them', () => {
    const parsed = parseRequest(request({ tweaks: { squashUid: 1000, squashGid: 0, staticNlink: true, volatile: false }, notApplied: ['timeout=5'] }));
    assert.deepEqual(parsed, { op: 'mount', mountpoint: '/m', lowers: ['/l'], tweaks: { squashUid: 1000, squashGid: 0, staticNlink: true, volatile: false }, notApplied: ['timeout=5'] });
  });

  it('refuses, in one line naming the field, a tweak of the wrong type or unknown, and options that are not strings', () => {
    for (const [fields, message] of [
      [{ tweaks: { squashUid: -1 } }, 'request: squashUid must be a uid or gid'],
      [{ tweaks: { squashGid: 2 ** 32 } }, 'request: squashGid must be a uid or gid'],
      [{ tweaks: { squashUid: '0' } }, 'request: squashUid must be a uid or gid'],
      [{ tweaks: { volatile: 'yes' } }, 'request: volatile must be true or false'],
      [{ tweaks: { writeback: true } }, 'request: unknown tweak "writeback"'],
      [{ tweaks: [] }, 'request: tweaks must be an object'],
      [{ tweaks: null }, 'request: tweaks must be an object'],
      [{ notApplied: [1] }, 'request: notApplied must be a list of options'],
    ] as const) {
      assert.throws(() => parseRequest(request(fields)), { message }, JSON.stringify(fields));
    }
  });
});
