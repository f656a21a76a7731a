import type { Filter, Selector } from './parse';

/** Resolves a field path on an object: its value, or undefined when absent. */
export type FieldLookup = (fieldpath: readonly string[]) => string | undefined;

export function matches(filter: Filter, lookup: FieldLookup): boolean {
  return filter.length === 0 || filter.some((conjunction) => conjunction.every((s) => selectorMatches(s, lookup)));
}

function selectorMatches(selector: Selector, lookup: FieldLookup): boolean {
  const value = lookup(selector.fieldpath);
  switch (selector.operator) {
    case 'present':
      return value !== undefined;
    case '==':
      return value === selector.value;
    case '!=':
      // As in containerd: an absent field is "not equal" to any value.
      return (value ?? '') !== selector.value;
    case '~=':
      return selector.regexp!.test(value ?? '');
  }
}
