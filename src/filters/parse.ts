import { invalidArgument } from '../errors';

/**
 * containerd's filter language:
 *
 *   selectors := selector ("," selector)*
 *   selector  := fieldpath (operator value)?
 *   fieldpath := field ("." field)*
 *   field     := quoted | [A-Za-z0-9_-]+
 *   operator  := "==" | "!=" | "~="
 *   value     := quoted | [^\s,]+
 *   quoted    := "go string" | /regexp/ | |regexp|
 *
 * A filter string is the conjunction of its selectors; several filter strings
 * are a disjunction.
 */
export type Operator = 'present' | '==' | '!=' | '~=';

export interface Selector {
  readonly fieldpath: readonly string[];
  readonly operator: Operator;
  readonly value: string;
  readonly regexp?: RegExp;
}

/** Any of the conjunctions matches. No conjunction at all matches everything. */
export type Filter = readonly (readonly Selector[])[];

export function parseFilters(inputs: readonly string[]): Filter {
  // As in containerd, an empty filter string matches everything, whatever the others say.
  if (inputs.includes('')) return [];
  return inputs.map(parseConjunction);
}

class Scanner {
  pos = 0;
  constructor(readonly input: string) {}

  fail(message: string): never {
    throw invalidArgument(`filter ${JSON.stringify(this.input)}: ${message} at offset ${this.pos}`);
  }
  skipSpace(): void {
    while (this.pos < this.input.length && /\s/.test(this.input[this.pos]!)) this.pos++;
  }
  peek(): string | undefined {
    this.skipSpace();
    return this.input[this.pos];
  }
  atEnd(): boolean {
    return this.peek() === undefined;
  }
  eat(text: string): boolean {
    if (this.peek() !== undefined && this.input.startsWith(text, this.pos)) {
      this.pos += text.length;
      return true;
    }
    return false;
  }
  takeWhile(re: RegExp): string {
    const start = this.pos;
    while (this.pos < this.input.length && re.test(this.input[this.pos]!)) this.pos++;
    return this.input.slice(start, this.pos);
  }
}

function parseConjunction(input: string): Selector[] {
  if (input.includes('\0')) throw invalidArgument(`filter ${JSON.stringify(input)}: unexpected NUL`);
  const s = new Scanner(input);
  const selectors = [parseSelector(s)];
  while (!s.atEnd()) {
    if (!s.eat(',')) s.fail(`unexpected ${JSON.stringify(s.peek())}`);
    selectors.push(parseSelector(s));
  }
  return selectors;
}

function parseSelector(s: Scanner): Selector {
  const fieldpath = [parseField(s)];
  while (s.peek() === '.') {
    s.pos++;
    fieldpath.push(parseField(s));
  }
  const next = s.peek();
  if (next === undefined || next === ',') return { fieldpath, operator: 'present', value: '' };
  const op = s.takeWhile(/[=!~]/);
  if (op !== '==' && op !== '!=' && op !== '~=') {
    s.fail(op === '' ? 'expected an operator ("==", "!=" or "~=")' : `unsupported operator ${JSON.stringify(op)}`);
  }
  const value = parseValue(s);
  if (op !== '~=') return { fieldpath, operator: op, value };
  try {
    return { fieldpath, operator: op, value, regexp: goRegExp(value) };
  } catch {
    return s.fail(`invalid regular expression ${JSON.stringify(value)}`);
  }
}

/** Go's RE2 syntax is JavaScript's for what filters use, but for leading flag groups such as `(?i)`. */
function goRegExp(source: string): RegExp {
  const m = /^\(\?([ims]+)\)/.exec(source);
  return m === null ? new RegExp(source) : new RegExp(source.slice(m[0].length), m[1]);
}

function parseField(s: Scanner): string {
  const c = s.peek();
  if (c !== undefined && isQuote(c)) return parseQuoted(s);
  const field = s.takeWhile(/[A-Za-z0-9_-]/);
  if (field === '') s.fail('expected a field name or a quoted string');
  return field;
}

function parseValue(s: Scanner): string {
  const c = s.peek();
  if (c === undefined) return s.fail('expected a value');
  if (isQuote(c)) return parseQuoted(s);
  if (c === '.') s.fail('expected a value');
  const value = s.takeWhile(/[^\s,]/);
  if (value === '') s.fail('expected a value');
  return value;
}

function isQuote(c: string): boolean {
  return c === '"' || c === '/' || c === '|';
}

/**
 * `"…"` follows Go's string syntax. `/…/` and `|…|` keep backslashes as they
 * are (so regular expressions need no double escaping) except before the
 * closing quote character.
 */
function parseQuoted(s: Scanner): string {
  const quote = s.input[s.pos]!;
  s.pos++;
  let out = '';
  for (;;) {
    const c = s.input[s.pos];
    if (c === undefined || c === '\n') return s.fail('unterminated quoted string');
    s.pos++;
    if (c === quote) return out;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = s.input[s.pos];
    if (e === undefined) return s.fail('unterminated quoted string');
    if (quote !== '"') {
      out += e === quote ? e : `\\${e}`;
      s.pos++;
      continue;
    }
    out += parseGoEscape(s);
  }
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', '"': '"',
};

function parseGoEscape(s: Scanner): string {
  const e = s.input[s.pos]!;
  s.pos++;
  const simple = SIMPLE_ESCAPES[e];
  if (simple !== undefined) return simple;
  const digits = (count: number, base: number): number => {
    const text = s.input.slice(s.pos, s.pos + count);
    const valid = base === 8 ? /^[0-7]+$/ : /^[0-9a-fA-F]+$/;
    if (text.length !== count || !valid.test(text)) s.fail('invalid escape sequence');
    s.pos += count;
    return parseInt(text, base);
  };
  switch (e) {
    case 'x':
      return String.fromCharCode(digits(2, 16));
    case 'u':
      return String.fromCodePoint(digits(4, 16));
    case 'U': {
      const cp = digits(8, 16);
      if (cp > 0x10ffff) s.fail('invalid escape sequence');
      return String.fromCodePoint(cp);
    }
    default:
      if (/[0-7]/.test(e)) {
        s.pos--;
        return String.fromCharCode(digits(3, 8));
      }
      return s.fail(`invalid escape sequence "\\${e}"`);
  }
}
