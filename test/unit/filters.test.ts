import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SnapfsError } from '../../src/errors';
import { matches } from '../../src/filters/match';
import { parseFilters } from '../../src/filters/parse';

const object: Record<string, string> = { name: 'a.b', kind: 'committed', parent: '', 'labels.x': 'y', 'labels.a.b': 'c' };
const lookup = (path: readonly string[]): string | undefined =>
  path[0] === 'labels' ? object[`labels.${path.slice(1).join('.')}`] : object[path[0]!];
const matchesAny = (...filters: string[]): boolean => matches(parseFilters(filters), lookup);

describe('filter syntax (containerd)', () => {
  it('parses fieldpaths, operators and quoted parts', () => {
    assert.deepEqual(parseFilters(['labels."a.b"==c, name~=/^a\\./']), [
      [
        { fieldpath: ['labels', 'a.b'], operator: '==', value: 'c' },
        { fieldpath: ['name'], operator: '~=', value: '^a\\.', regexp: /^a\./ },
      ],
    ]);
    assert.deepEqual(parseFilters(['labels.x']), [[{ fieldpath: ['labels', 'x'], operator: 'present', value: '' }]]);
    assert.deepEqual(parseFilters(['name=="tab\\there"'])[0]![0]!.value, 'tab\there');
    assert.deepEqual(parseFilters(['name=="\\x41\\u00e9\\101"'])[0]![0]!.value, 'Aé' + 'A');
    assert.deepEqual(parseFilters(['name==a.b'])[0]![0]!.value, 'a.b');
    assert.deepEqual(parseFilters(['']), []);
  });

  it('matches: == != ~= presence, "," is and, several filters are or', () => {
    assert.equal(matchesAny('name==a.b'), true);
    assert.equal(matchesAny('name==a'), false);
    assert.equal(matchesAny('kind!=view'), true);
    assert.equal(matchesAny('kind!=committed'), false);
    assert.equal(matchesAny('labels.x'), true);
    assert.equal(matchesAny('labels.z'), false);
    assert.equal(matchesAny('labels.z!=q'), true, 'absent is not equal to anything but ""');
    assert.equal(matchesAny('labels."a.b"==c'), true);
    assert.equal(matchesAny('labels.a.b==c'), true, 'dotted label path joins like containerd');
    assert.equal(matchesAny('name~=^a'), true);
    assert.equal(matchesAny('name~=^b'), false);
    assert.equal(matchesAny('kind==committed,labels.x==y'), true);
    assert.equal(matchesAny('kind==committed,labels.x==n'), false);
    assert.equal(matchesAny('kind==view', 'labels.x==y'), true);
    assert.equal(matchesAny('kind==view', 'labels.x==n'), false);
    assert.equal(matchesAny('parent'), true, 'parent is always present, empty for none');
    assert.equal(matchesAny(), true);
    assert.equal(matchesAny('', 'kind==view'), true, 'an empty filter matches everything, as in containerd');
    assert.equal(matchesAny('name~=(?i)^A\\.B$'), true, 'Go flag groups');
    assert.equal(matchesAny('name~=^A'), false);
  });

  it('rejects malformed filters as InvalidArgument', () => {
    for (const bad of ['name==', '==x', 'name=x', 'name<>x', 'name==a,', ',name==a', 'labels."x', 'name=="\\q"', 'name~=(', 'a b', 'name==x y', '.x']) {
      assert.throws(
        () => parseFilters([bad]),
        (err: unknown) => err instanceof SnapfsError && err.kind === 'InvalidArgument' && err.message.includes('filter'),
        bad,
      );
    }
  });
});
