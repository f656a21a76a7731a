import { invalidArgument } from '../errors';

/** Commander collector for repeatable options. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `k=v` pairs into labels; `allowEmpty` admits `k=` (meaning: remove k). */
export function parseLabels(pairs: readonly string[], allowEmpty = true): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq < 0) throw invalidArgument(`label ${JSON.stringify(pair)}: expected KEY=VALUE`);
    if (eq === 0) throw invalidArgument(`label ${JSON.stringify(pair)}: key must not be empty`);
    const value = pair.slice(eq + 1);
    if (value === '' && !allowEmpty) throw invalidArgument(`label ${JSON.stringify(pair)}: value must not be empty`);
    labels[pair.slice(0, eq)] = value;
  }
  return labels;
}
