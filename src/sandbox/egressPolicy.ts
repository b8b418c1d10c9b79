import { promises as dns } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import type { EgressConfig, EgressRule } from '../ops/egressConfig.js';

/** Where a connection may go: the addresses to try, in order, or why not. */
export type EgressDecision = { addresses: string[] } | { refused: string };

/** Looks up a name's addresses (the proxy's own resolution: the build has no DNS). */
export type Lookup = (host: string) => Promise<string[]>;

/**
 * Addresses no name may lead to unless a range in BUILD_EGRESS_ALLOW names them: this host and its networks
 * (loopback, private, carrier-grade NAT, link-local with the cloud metadata service, unique-local with
 * fd00:ec2::254), multicast and reserved space, and NAT64's IPv6 form of IPv4 addresses. (An IPv4-mapped IPv6
 * address, ::ffff:127.0.0.1, is checked against the IPv4 ranges by BlockList itself.)
 */
const FORBIDDEN: Array<[string, number, 'ipv4' | 'ipv6']> = [
  ['0.0.0.0', 8, 'ipv4'],
  ['10.0.0.0', 8, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'],
  ['127.0.0.0', 8, 'ipv4'],
  ['169.254.0.0', 16, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.0.0.0', 24, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['198.18.0.0', 15, 'ipv4'],
  ['224.0.0.0', 4, 'ipv4'],
  ['240.0.0.0', 4, 'ipv4'],
  ['::', 128, 'ipv6'],
  ['::1', 128, 'ipv6'],
  ['64:ff9b::', 96, 'ipv6'],
  ['100::', 64, 'ipv6'],
  ['fc00::', 7, 'ipv6'],
  ['fe80::', 10, 'ipv6'],
  ['ff00::', 8, 'ipv6'],
];

function blockList(ranges: Array<[string, number, 'ipv4' | 'ipv6']>): BlockList {
  const list = new BlockList();
  for (const [address, prefix, family] of ranges) list.addSubnet(address, prefix, family);
  return list;
}

const forbidden = blockList(FORBIDDEN);

function family(address: string): 'ipv4' | 'ipv6' {
  return isIP(address) === 4 ? 'ipv4' : 'ipv6';
}

/** The host's own resolver (getaddrinfo), or the resolvers BUILD_EGRESS_DNS names. */
export function egressLookup(servers: string[]): Lookup {
  if (!servers.length)
    return async (host) => (await dns.lookup(host, { all: true, verbatim: true })).map((a) => a.address);
  const resolver = new dns.Resolver({ timeout: 5_000, tries: 2 });
  resolver.setServers(servers);
  return async (host) => {
    const found = await Promise.allSettled([resolver.resolve4(host), resolver.resolve6(host)]);
    const addresses = found.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
    if (!addresses.length) throw new Error(`${host} has no address`);
    return addresses;
  };
}

/** How long a build's proxy keeps a name's addresses (the check is on them, so a later answer cannot rebind). */
const ANSWER_TTL_MS = 30_000;

function hostMatches(rule: Extract<EgressRule, { kind: 'host' }>, host: string, port: number): boolean {
  if (!rule.ports.includes(port)) return false;
  return rule.wildcard ? host.endsWith(`.${rule.host}`) : host === rule.host;
}

/** Decides each connection a build asks its egress proxy for, by the configured rules. */
export class EgressPolicy {
  private readonly ranges: BlockList;
  private readonly hosts: Array<Extract<EgressRule, { kind: 'host' }>>;
  private readonly cidrs: Array<{ ports: number[]; list: BlockList }>;
  /** Answers kept for a short while (one policy serves one build): a download's many connections ask once. */
  private readonly answers = new Map<string, { addresses: Promise<string[]>; at: number }>();

  constructor(
    rules: EgressConfig['rules'],
    private readonly lookup: Lookup,
  ) {
    this.hosts = rules.filter((r) => r.kind === 'host');
    this.cidrs = rules.flatMap((r) =>
      r.kind === 'cidr' ? [{ ports: r.ports, list: blockList([[r.address, r.prefix, r.family]]) }] : [],
    );
    this.ranges = blockList(
      rules.flatMap((r) => (r.kind === 'cidr' ? [[r.address, r.prefix, r.family] as const] : [])) as Array<
        [string, number, 'ipv4' | 'ipv6']
      >,
    );
  }

  /** How many destinations are allowed, for the sandbox's description. */
  get size(): number {
    return this.hosts.length + this.rangeCount;
  }

  private get rangeCount(): number {
    return this.ranges.rules.length;
  }

  private cachedLookup(host: string): Promise<string[]> {
    const now = performance.now();
    const kept = this.answers.get(host);
    if (kept && now - kept.at < ANSWER_TTL_MS) return kept.addresses;
    const addresses = this.lookup(host);
    this.answers.set(host, { addresses, at: now });
    addresses.catch(() => this.answers.delete(host));
    return addresses;
  }

  // An address given as such: within a range, on one of that range's ports.
  private literalInRange(address: string, port: number): boolean {
    return this.cidrs.some(
      (range) => range.ports.includes(port) && range.list.check(address, family(address)),
    );
  }

  private inRange(address: string): boolean {
    return this.ranges.check(address, family(address));
  }

  // An address literal goes through when a range names it or a rule names it exactly (an index configured by
  // address). A name must match a rule first, so a refused name is never looked up (no DNS exfiltration); then its
  // addresses must be public, or named by a range.
  async decide(rawHost: string, port: number): Promise<EgressDecision> {
    const host = rawHost
      .toLowerCase()
      .replace(/^\[|\]$/g, '')
      .replace(/\.$/, '');
    if (isIP(host)) {
      if (this.literalInRange(host, port) || this.hosts.some((rule) => hostMatches(rule, host, port)))
        return { addresses: [host] };
      return { refused: 'not an allowed destination' };
    }
    if (!this.hosts.some((rule) => hostMatches(rule, host, port)))
      return { refused: 'not an allowed destination' };
    let addresses: string[];
    try {
      addresses = await this.cachedLookup(host);
    } catch {
      return { refused: 'its name does not resolve' };
    }
    const usable = addresses.filter((a) => this.inRange(a) || !forbidden.check(a, family(a)));
    if (!usable.length)
      return { refused: `it resolves to ${addresses.join(', ')}, a local or reserved address` };
    return { addresses: usable };
  }
}
