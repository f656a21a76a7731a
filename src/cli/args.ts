import { invalidArgument } from '../errors';

/** Commander collector for repeatable options. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `k=v` pairs into labels; `allowEmpty` admits `k=` (meaning: remove k). */
export function parseLabels(pairs: readonly string[], allowEmpty = true): Record<string, string> {
  const labels: [string, string][] = [];
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq < 0) throw invalidArgument(`label ${JSON.stringify(pair)}: expected KEY=VALUE`);
    if (eq === 0) throw invalidArgument(`label ${JSON.stringify(pair)}: key must not be empty`);
    const value = pair.slice(eq + 1);
    if (value === '' && !allowEmpty) throw invalidArgument(`label ${JSON.stringify(pair)}: value must not be empty`);
    labels.push([pair.slice(0, eq), value]);
  }
  // fromEntries, not assignment: a label may be called __proto__.
  return Object.fromEntries(labels);
}
