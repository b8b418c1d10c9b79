import protobuf from 'protobufjs';
import { type CommitResult, commitResultFields, decodeCommitResult } from '../delivery/contracts.js';

/** Bytes that are not a well-formed CommitResult; the message says why, for the dead letter's header. */
export class NotACommitResult extends Error {}

const WIRE_TYPE_NAMES = ['varint', '64-bit', 'length-delimited', 'group start', 'group end', '32-bit'];
const LENGTH_DELIMITED = 2;
const utf8 = new TextDecoder('utf-8', { fatal: true });
/** Read once: every message on the bridge's hot path is checked against them. */
const FIELDS = commitResultFields();

// The wire type each declared field must arrive with (every CommitResult field is a string: length-delimited).
function expectedWireType(type: string): number {
  if (type === 'string' || type === 'bytes') return LENGTH_DELIMITED;
  if (type === 'double' || type === 'fixed64' || type === 'sfixed64') return 1;
  if (type === 'float' || type === 'fixed32' || type === 'sfixed32') return 5;
  return 0;
}

// Walks the protobuf wire format before decoding: protobufjs reads a field with the wrong wire type, or a string that
// is not UTF-8, as garbage instead of refusing it, so random bytes often "decode" to a CommitResult.
function checkWireFormat(bytes: Uint8Array): void {
  const reader = protobuf.Reader.create(bytes);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const id = tag >>> 3;
    const wireType = tag & 7;
    if (id === 0) throw new NotACommitResult('field number 0 is not valid protobuf');
    const field = FIELDS.get(id);
    if (field) {
      const expected = expectedWireType(field.type);
      if (wireType !== expected) {
        throw new NotACommitResult(
          `field ${id} (${field.name}) arrived as ${WIRE_TYPE_NAMES[wireType] ?? `wire type ${wireType}`}, not ${WIRE_TYPE_NAMES[expected]}`,
        );
      }
      if (field.type === 'string') {
        const value = reader.bytes();
        try {
          utf8.decode(value);
        } catch {
          throw new NotACommitResult(`field ${id} (${field.name}) is not UTF-8`);
        }
        continue;
      }
    }
    // Unknown fields (a newer producer) are allowed, but must be well-formed.
    reader.skipType(wireType);
  }
}

// Decodes a CommitResult strictly: the wire format must be valid for its declared fields. Throws NotACommitResult.
export function readCommitResult(bytes: Uint8Array): CommitResult {
  try {
    checkWireFormat(bytes);
    return decodeCommitResult(bytes);
  } catch (thrown) {
    if (thrown instanceof NotACommitResult) throw thrown;
    // protobufjs: "index out of range", "invalid wire type 7 at offset 3", ...
    throw new NotACommitResult(thrown instanceof Error ? thrown.message : String(thrown));
  }
}
