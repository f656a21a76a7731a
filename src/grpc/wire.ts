/**
 * A strict check of protobuf's wire format, driven by the message types of a
 * loaded .proto: whether some bytes are exactly one message of a type. Every
 * field must end where its length says, inside its message; a known field
 * must come with the wire type of its type; strings must be UTF-8; message
 * fields (map entries among them) must be whole messages in turn. Unknown
 * fields are skipped when well-formed, since a newer client may send fields
 * this .proto does not have.
 */
import type { PackageDefinition, ServiceDefinition } from '@grpc/proto-loader';
import { isUtf8 } from 'node:buffer';

/** Why some bytes are not exactly one message of a type, in one line; null if they are. */
export type WireCheck = (bytes: Uint8Array) => string | null;

/** The check of each method's request of `service` (its full name in `pkg`), by method name. */
export function requestChecks(pkg: PackageDefinition, service: string): Readonly<Record<string, WireCheck>> {
  const methods = pkg[service];
  // Message and enum definitions say their format; a service's does not.
  if (methods === undefined || typeof methods.format === 'string') throw new Error(`${service}: no such service`);
  const rules = messageRules(pkg);
  return Object.fromEntries(
    Object.entries(methods as ServiceDefinition).map(([method, definition]) => {
      // Only the request type's own name is at hand: it is looked up from the service, as protoc
      // looks up a name in the .proto (one from another package is not found, and fails here).
      const fields = rules(service, (definition.requestType.type as MessageDescriptor).name);
      const check: WireCheck = (bytes) => {
        try {
          checkMessage(bytes, 0, bytes.length, fields, []);
          return null;
        } catch (err) {
          if (err instanceof WireError) return err.message;
          throw err;
        }
      };
      return [method, check];
    }),
  );
}

// The parts of google.protobuf.DescriptorProto read here, as @grpc/proto-loader presents them.
interface FieldDescriptor {
  readonly name: string;
  readonly number: number;
  readonly label: string;
  readonly type: string;
  /** A message type's name relative to the field's message (`Info`, `google.protobuf.Timestamp`). */
  readonly typeName: string;
}
interface MessageDescriptor {
  readonly name: string;
  readonly field: readonly FieldDescriptor[];
  /** Map entries are among them (`Labels` for `map<string, string> labels`). */
  readonly nestedType: readonly MessageDescriptor[];
}
const MESSAGE_FORMAT = 'Protocol Buffer 3 DescriptorProto';

// Wire types 3 and 4 open and close groups, which proto3 does not have; 6 and 7 do not exist.
const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;
type WireType = typeof VARINT | typeof I64 | typeof LEN | typeof I32;
const WIRE_NAMES: Readonly<Record<WireType, string>> = { [VARINT]: 'varint', [I64]: 'fixed64', [LEN]: 'length-delimited', [I32]: 'fixed32' };
const isWireType = (n: number): n is WireType => n === VARINT || n === I64 || n === LEN || n === I32;

/** The wire type of each field type; a type missing here (groups) is refused when the .proto is loaded. */
const WIRE_TYPES: Readonly<Partial<Record<string, WireType>>> = {
  TYPE_INT32: VARINT,
  TYPE_INT64: VARINT,
  TYPE_UINT32: VARINT,
  TYPE_UINT64: VARINT,
  TYPE_SINT32: VARINT,
  TYPE_SINT64: VARINT,
  TYPE_BOOL: VARINT,
  TYPE_ENUM: VARINT,
  TYPE_FIXED64: I64,
  TYPE_SFIXED64: I64,
  TYPE_DOUBLE: I64,
  TYPE_FIXED32: I32,
  TYPE_SFIXED32: I32,
  TYPE_FLOAT: I32,
  TYPE_STRING: LEN,
  TYPE_BYTES: LEN,
  TYPE_MESSAGE: LEN,
};

const MAX_FIELD_NUMBER = 2 ** 29 - 1;

interface FieldRule {
  readonly name: string;
  readonly wireType: WireType;
  /** Set for string fields: Go's protobuf, which containerd uses, refuses a string that is not UTF-8. */
  readonly utf8: boolean;
  /** The fields of a message field's type, whose bytes must be a whole message of it. */
  readonly message: MessageRule | undefined;
}
/** A message type's known fields by number. */
type MessageRule = ReadonlyMap<number, FieldRule>;

/** The rule of the message type `name` means in the scope `scope` (a full name), made once per type. */
function messageRules(pkg: PackageDefinition): (scope: string, name: string) => MessageRule {
  const descriptors = new Map<string, MessageDescriptor>();
  const add = (fullName: string, descriptor: MessageDescriptor): void => {
    descriptors.set(fullName, descriptor);
    for (const nested of descriptor.nestedType) add(`${fullName}.${nested.name}`, nested);
  };
  for (const [fullName, definition] of Object.entries(pkg)) {
    if (definition.format === MESSAGE_FORMAT) add(fullName, definition.type as MessageDescriptor);
  }

  // As protoc resolves names: in the innermost scope first, then outwards to the top.
  const resolve = (scope: string, name: string): string => {
    for (let outer = scope; ; outer = outer.slice(0, Math.max(0, outer.lastIndexOf('.')))) {
      const fullName = outer === '' ? name : `${outer}.${name}`;
      if (descriptors.has(fullName)) return fullName;
      if (outer === '') throw new Error(`${scope}: no message type ${name} in scope`);
    }
  };

  const rules = new Map<string, Map<number, FieldRule>>();
  const ruleOf = (fullName: string): MessageRule => {
    const made = rules.get(fullName);
    if (made !== undefined) return made;
    const fields = new Map<number, FieldRule>();
    rules.set(fullName, fields); // before its fields are made, so that a type may contain itself
    for (const field of descriptors.get(fullName)!.field) fields.set(field.number, fieldRule(fullName, field));
    return fields;
  };
  const fieldRule = (scope: string, field: FieldDescriptor): FieldRule => {
    const wireType = WIRE_TYPES[field.type];
    if (wireType === undefined) throw new Error(`${scope}.${field.name}: fields of ${field.type} are not supported`);
    // A repeated number may also come packed, as one length-delimited run; no message here has one.
    if (field.label === 'LABEL_REPEATED' && wireType !== LEN) throw new Error(`${scope}.${field.name}: packed fields are not supported`);
    const message = field.type === 'TYPE_MESSAGE' ? ruleOf(resolve(scope, field.typeName)) : undefined;
    return { name: field.name, wireType, utf8: field.type === 'TYPE_STRING', message };
  };
  return (scope, name) => ruleOf(resolve(scope, name));
}

/** What a check finds, thrown from deep inside it; any other error is a bug, and passes through. */
class WireError extends Error {}

/** A field on the way down from the outermost message; its name when it is known. */
interface Step {
  readonly number: number;
  readonly name: string | undefined;
}

/** `field 2.6.1 (info.labels.key)`; `unknown field 2.15` (only the last step can be unknown). */
function label(path: readonly Step[]): string {
  const numbers = path.map((step) => step.number).join('.');
  if (path[path.length - 1]!.name === undefined) return `unknown field ${numbers}`;
  return `field ${numbers} (${path.map((step) => step.name).join('.')})`;
}

/**
 * Reads the varint at `at`, before `end`; returns its value and where it
 * ends. The value is exact up to 2^53: a larger one is only ever compared
 * with lengths and field numbers far smaller, which it still exceeds.
 * `subject` names what is read, for the error.
 */
function readVarint(bytes: Uint8Array, at: number, end: number, subject: () => string): [value: number, next: number] {
  let value = 0;
  for (let i = 0; ; i++) {
    if (at + i >= end) throw new WireError(`${subject()} runs past the end of the message`);
    const byte = bytes[at + i]!;
    // The tenth byte holds bit 63 alone: anything more (an eleventh byte included) is no 64-bit number.
    if (i === 9 && byte > 1) throw new WireError(`${subject()} has a varint of more than 64 bits`);
    value += (byte & 0x7f) * 2 ** (7 * i);
    if (byte < 0x80) return [value, at + i + 1];
  }
}

/** Checks that bytes[start, end) are a whole message of `fields`, the message of the field at `outer`. */
function checkMessage(bytes: Uint8Array, start: number, end: number, fields: MessageRule, outer: readonly Step[]): void {
  let at = start;
  while (at < end) {
    const tagAt = at;
    const tag = (): string => `the tag at byte ${tagAt}${outer.length === 0 ? '' : ` in ${label(outer)}`}`;
    const [key, valueAt] = readVarint(bytes, at, end, tag);
    const number = Math.floor(key / 8);
    if (number < 1 || number > MAX_FIELD_NUMBER) throw new WireError(`${tag()} has field number ${number}, outside 1 to ${MAX_FIELD_NUMBER}`);
    const rule = fields.get(number);
    const path = [...outer, { number, name: rule?.name }];
    const field = (): string => label(path);
    const wireType = key % 8;
    if (!isWireType(wireType)) {
      const why = wireType === 3 || wireType === 4 ? 'a group, which proto3 does not have' : 'which protobuf does not define';
      throw new WireError(`${field()} has wire type ${wireType}, ${why}`);
    }
    if (rule !== undefined && wireType !== rule.wireType) throw new WireError(`${field()} is sent as ${WIRE_NAMES[wireType]}, not as ${WIRE_NAMES[rule.wireType]}`);
    switch (wireType) {
      case VARINT:
        at = readVarint(bytes, valueAt, end, field)[1];
        break;
      case I64:
      case I32:
        at = valueAt + (wireType === I64 ? 8 : 4);
        if (at > end) throw new WireError(`${field()} runs past the end of the message`);
        break;
      case LEN: {
        const [length, contentAt] = readVarint(bytes, valueAt, end, field);
        if (length > end - contentAt) throw new WireError(`${field()} runs past the end of the message`);
        at = contentAt + length;
        if (rule?.utf8 && !isUtf8(bytes.subarray(contentAt, at))) throw new WireError(`${field()} is not valid UTF-8`);
        if (rule?.message !== undefined) checkMessage(bytes, contentAt, at, rule.message, path);
        break;
      }
    }
  }
}
