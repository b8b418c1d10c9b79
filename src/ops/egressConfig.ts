import { isIP } from 'node:net';
import { type Env, optional } from './configValues.js';
import { ConfigError } from './errors.js';

/** What a build that resolves or installs may reach (BUILD_EGRESS). */
export type EgressMode = 'index' | 'internet' | 'none';

/** One allowed destination: a host (exact, or `*.` and any subdomain) with its ports, or an address range. */
export type EgressRule =
  | { kind: 'host'; host: string; wildcard: boolean; ports: number[]; from: string }
  | {
      kind: 'cidr';
      address: string;
      prefix: number;
      family: 'ipv4' | 'ipv6';
      /** Ports an address of the range may be connected to by address (an allowed name keeps its own ports). */
      ports: number[];
      from: string;
    };

export interface EgressConfig {
  mode: EgressMode;
  /** The package index's hosts (from the runner's index configuration) and BUILD_EGRESS_ALLOW. */
  rules: EgressRule[];
  /** Resolvers the proxy asks instead of the host's (BUILD_EGRESS_DNS, `ip` or `ip:port`). */
  dns: string[];
}

/** Where uv and pip look when nothing else is configured: PyPI's pages and the host its file links point to. */
const PYPI = ['pypi.org', 'files.pythonhosted.org'];
/** The index settings the runner passes to installs, whose hosts the proxy allows. */
const INDEX_VARIABLES = [
  'UV_DEFAULT_INDEX',
  'UV_INDEX_URL',
  'UV_INDEX',
  'UV_EXTRA_INDEX_URL',
  'PIP_INDEX_URL',
  'PIP_EXTRA_INDEX_URL',
  'PIP_FIND_LINKS',
];
/** Ports allowed for a host named without one: HTTPS and plain HTTP. */
const WEB_PORTS = [443, 80];
const HOST_NAME = /^(\*\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;

function port(raw: string, entry: string): number {
  const value = Number(raw);
  if (!/^\d{1,5}$/.test(raw) || value < 1 || value > 65_535)
    throw new ConfigError(`BUILD_EGRESS_ALLOW: "${entry}" has no valid port`);
  return value;
}

// One BUILD_EGRESS_ALLOW entry: `host`, `host:port`, `*.example.org`, `[v6]:port`, a range `10.8.0.0/16`,
// `10.8.0.0/16:3141`, `fd00::/8` or `[fd00::/8]:3141`.
export function parseEgressEntry(entry: string, from = 'BUILD_EGRESS_ALLOW'): EgressRule {
  const text = entry.trim().toLowerCase();
  const cidr = /^\[?([^/\]]+)\/(\d{1,3})\]?(?::(\d+))?$/.exec(text);
  if (cidr && (isIP(cidr[1] ?? '') === 4 || text.startsWith('[') || cidr[3] === undefined)) {
    const [, address = '', bits = '', portText] = cidr;
    const family = isIP(address);
    const prefix = Number(bits);
    if (!family || prefix > (family === 4 ? 32 : 128))
      throw new ConfigError(`BUILD_EGRESS_ALLOW: "${entry}" is not an address range`);
    const ports = portText === undefined ? WEB_PORTS : [port(portText, entry)];
    return { kind: 'cidr', address, prefix, family: family === 4 ? 'ipv4' : 'ipv6', ports, from };
  }
  const bracketed = /^\[([0-9a-f:.]+)\](?::(\d+))?$/.exec(text);
  if (bracketed && isIP(bracketed[1] ?? '') === 6) {
    const ports = bracketed[2] ? [port(bracketed[2], entry)] : WEB_PORTS;
    return { kind: 'host', host: bracketed[1] ?? '', wildcard: false, ports, from };
  }
  if (isIP(text) === 6) return { kind: 'host', host: text, wildcard: false, ports: WEB_PORTS, from };
  const [, host = '', portText] = /^([^:]*)(?::(\d+))?$/.exec(text) ?? [];
  if (!(HOST_NAME.test(host) || isIP(host) === 4))
    throw new ConfigError(`BUILD_EGRESS_ALLOW: "${entry}" is not a host, host:port or address range`);
  const wildcard = host.startsWith('*.');
  const ports = portText === undefined ? WEB_PORTS : [port(portText, entry)];
  return { kind: 'host', host: wildcard ? host.slice(2) : host, wildcard, ports, from };
}

// An index URL, possibly named (`name=https://…`, as UV_INDEX allows).
function indexUrl(word: string): URL | undefined {
  for (const candidate of [word, word.slice(word.indexOf('=') + 1)])
    if (URL.canParse(candidate)) return new URL(candidate);
  return undefined;
}

// The host and port of each index URL a variable holds (UV_INDEX may name them: `name=https://…`).
function indexRules(env: Env): EgressRule[] {
  const rules: EgressRule[] = [];
  for (const name of INDEX_VARIABLES) {
    for (const word of (optional(env, name) ?? '').split(/[\s,]+/).filter(Boolean)) {
      const url = indexUrl(word);
      if (!url || !['http:', 'https:'].includes(url.protocol)) continue;
      const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
      const ports = [Number(url.port) || (url.protocol === 'https:' ? 443 : 80)];
      rules.push({ kind: 'host', host, wildcard: false, ports, from: name });
    }
  }
  // Extra indexes and find-links add to PyPI; only a primary index (or UV_INDEX's `default`) replaces it.
  const primary = ['UV_DEFAULT_INDEX', 'UV_INDEX_URL', 'PIP_INDEX_URL'].some((name) => optional(env, name));
  if (primary) return rules;
  const pypi: EgressRule[] = PYPI.map((host) => ({
    kind: 'host',
    host,
    wildcard: false,
    ports: [443],
    from: 'PyPI',
  }));
  return [...rules, ...pypi];
}

function mode(env: Env): EgressMode {
  const raw = optional(env, 'BUILD_EGRESS')?.toLowerCase() ?? 'index';
  if (raw === 'index' || raw === 'internet' || raw === 'none') return raw;
  throw new ConfigError(`BUILD_EGRESS must be index, internet or none, got "${raw}"`);
}

function resolvers(env: Env): string[] {
  const list = (optional(env, 'BUILD_EGRESS_DNS') ?? '').split(/[\s,]+/).filter(Boolean);
  for (const server of list) {
    const [address = '', portText] = server.startsWith('[')
      ? (/^\[([^\]]+)\](?::(\d+))?$/.exec(server)?.slice(1) ?? [])
      : server.split(':');
    if (!isIP(address) || (portText !== undefined && !/^\d{1,5}$/.test(portText)))
      throw new ConfigError(`BUILD_EGRESS_DNS must list resolver addresses (ip or ip:port), got "${server}"`);
  }
  return list;
}

// BUILD_EGRESS, BUILD_EGRESS_ALLOW and BUILD_EGRESS_DNS, with the index hosts from the runner's index settings.
export function egressConfig(env: Env): EgressConfig {
  const allowed = (optional(env, 'BUILD_EGRESS_ALLOW') ?? '').split(/[\s,]+/).filter(Boolean);
  return {
    mode: mode(env),
    rules: [...indexRules(env), ...allowed.map((entry) => parseEgressEntry(entry))],
    dns: resolvers(env),
  };
}
