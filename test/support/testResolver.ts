import { createSocket, type RemoteInfo } from 'node:dgram';
import { promises as dns } from 'node:dns';

/** A DNS server on loopback for one test: its own names, every other name as this host resolves it. */
export interface TestResolver {
  /** `127.0.0.1:port`, for BUILD_EGRESS_DNS. */
  address: string;
  /** Every name asked for, in order. */
  queries: string[];
  close(): Promise<void>;
}

/** The one record type answered (IPv4 addresses); any other type gets an empty answer. */
const A = 1;

// The question's name and type, from a query message (RFC 1035 §4.1).
function question(message: Buffer): { name: string; type: number; end: number } | undefined {
  const labels: string[] = [];
  let at = 12;
  while (at < message.length) {
    const length = message[at] ?? 0;
    if (length === 0) break;
    if (length > 63) return undefined;
    labels.push(message.subarray(at + 1, at + 1 + length).toString('latin1'));
    at += 1 + length;
  }
  if (at + 5 > message.length) return undefined;
  return { name: labels.join('.').toLowerCase(), type: message.readUInt16BE(at + 1), end: at + 5 };
}

function answer(
  query: Buffer,
  q: { type: number; end: number },
  addresses: string[],
  known: boolean,
): Buffer {
  const records = addresses.map((address) => {
    const data = Buffer.from(address.split('.').map(Number));
    const head = Buffer.alloc(12);
    head.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    head.writeUInt16BE(q.type, 2);
    head.writeUInt16BE(1, 4); // IN
    head.writeUInt32BE(5, 6); // TTL
    head.writeUInt16BE(data.length, 10);
    return Buffer.concat([head, data]);
  });
  const header = Buffer.from(query.subarray(0, 12));
  header.writeUInt16BE(known ? 0x8180 : 0x8183, 2); // a response, recursion available; NXDOMAIN when unknown
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(records.length, 6);
  header.writeUInt32BE(0, 8);
  return Buffer.concat([header, query.subarray(12, q.end), ...records]);
}

// Answers `names` (name → IPv4 address) itself; any other name with this host's own IPv4 answer (the package index).
export async function startTestResolver(names: Record<string, string>): Promise<TestResolver> {
  const socket = createSocket('udp4');
  const queries: string[] = [];
  socket.on('message', (message: Buffer, from: RemoteInfo) => {
    const q = question(message);
    if (!q) return;
    queries.push(q.name);
    const own = names[q.name];
    const found: Promise<string[]> =
      own !== undefined
        ? Promise.resolve(q.type === A ? [own] : [])
        : q.type === A
          ? dns.lookup(q.name, { all: true, family: 4 }).then((all) => all.map((a) => a.address))
          : Promise.resolve([]);
    void found
      .then(
        (addresses) => answer(message, q, addresses, true),
        () => answer(message, q, [], false),
      )
      .then((reply) => socket.send(reply, from.port, from.address));
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${socket.address().port}`,
    queries,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
