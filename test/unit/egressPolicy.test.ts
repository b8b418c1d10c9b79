import assert from 'node:assert/strict';
import { test } from 'node:test';
import { egressConfig, parseEgressEntry } from '../../src/ops/egressConfig.js';
import { ConfigError } from '../../src/ops/errors.js';
import { EgressPolicy } from '../../src/sandbox/egressPolicy.js';

// A resolver of the test's own: what each name resolves to, and every name asked for.
function lookup(names: Record<string, string[]>) {
  const asked: string[] = [];
  return {
    asked,
    lookup: async (host: string) => {
      asked.push(host);
      const found = names[host];
      if (!found) throw new Error(`${host}: no address`);
      return found;
    },
  };
}

test('with no index configured, PyPI on 443 only; the index settings name their own hosts and ports', () => {
  const pypi = egressConfig({});
  assert.equal(pypi.mode, 'index');
  assert.deepEqual(
    pypi.rules.map((r) => (r.kind === 'host' ? `${r.host}:${r.ports.join('/')}` : r.address)),
    ['pypi.org:443', 'files.pythonhosted.org:443'],
  );
  const own = egressConfig({
    UV_INDEX_URL: 'https://ci:s3cret@index.example:8443/simple',
    UV_INDEX: 'internal=http://10.1.2.3:3141/root/pypi',
    PIP_FIND_LINKS: '/opt/wheels',
    BUILD_EGRESS_ALLOW: '*.files.example, 10.8.0.0/16, [fd00::1]:8080',
  });
  assert.deepEqual(
    own.rules.map((r) =>
      r.kind === 'host'
        ? `${r.wildcard ? '*.' : ''}${r.host}:${r.ports.join('/')}`
        : `${r.address}/${r.prefix}`,
    ),
    ['index.example:8443', '10.1.2.3:3141', '*.files.example:443/80', '10.8.0.0/16', 'fd00::1:8080'],
  );
  assert.ok(!JSON.stringify(own).includes('s3cret'), 'no credential is kept');
});

test('bad settings are one clear error naming the variable', () => {
  for (const [env, message] of [
    [{ BUILD_EGRESS: 'open' }, /BUILD_EGRESS must be index, internet or none, got "open"/],
    [{ BUILD_EGRESS_ALLOW: 'exa mple.org:99999' }, /BUILD_EGRESS_ALLOW: "mple.org:99999" has no valid port/],
    [{ BUILD_EGRESS_ALLOW: '10.0.0.0/40' }, /BUILD_EGRESS_ALLOW: "10.0.0.0\/40" is not an address range/],
    [{ BUILD_EGRESS_ALLOW: 'http://x.org' }, /BUILD_EGRESS_ALLOW: "http:\/\/x.org" is not a host/],
    [{ BUILD_EGRESS_DNS: 'resolver.local' }, /BUILD_EGRESS_DNS must list resolver addresses/],
  ] as const) {
    assert.throws(
      () => egressConfig(env),
      (error: unknown) => error instanceof ConfigError && message.test(error.message),
    );
  }
});

test('a name not allowed is refused without a lookup; an allowed one must resolve to a public address', async () => {
  const dns = lookup({
    'pypi.org': ['151.101.0.223'],
    'files.pythonhosted.org': ['::1', '151.101.64.223'],
    'rebind.example': ['127.0.0.1'],
    'metadata.example': ['169.254.169.254'],
    'v6-metadata.example': ['fd00:ec2::254'],
    'mapped.example': ['::ffff:127.0.0.1'],
    'private.example': ['10.8.1.2'],
  });
  const rules = egressConfig({
    BUILD_EGRESS_ALLOW:
      'rebind.example,metadata.example,v6-metadata.example,mapped.example,private.example:3141,10.8.0.0/16',
  }).rules;
  const policy = new EgressPolicy(rules, dns.lookup);
  assert.deepEqual(await policy.decide('pypi.org', 443), { addresses: ['151.101.0.223'] });
  assert.deepEqual(await policy.decide('PyPI.org.', 443), { addresses: ['151.101.0.223'] });
  assert.deepEqual(await policy.decide('files.pythonhosted.org', 443), { addresses: ['151.101.64.223'] });
  assert.match(JSON.stringify(await policy.decide('pypi.org', 22)), /not an allowed destination/);
  assert.match(
    JSON.stringify(await policy.decide('exfil-secret.evil.example', 443)),
    /not an allowed destination/,
  );
  assert.ok(!dns.asked.some((name) => name.includes('secret')), 'a refused name is never looked up');
  for (const name of ['rebind.example', 'metadata.example', 'v6-metadata.example', 'mapped.example'])
    assert.match(JSON.stringify(await policy.decide(name, 443)), /a local or reserved address/, name);
  // A CIDR names private addresses: a private index.
  assert.deepEqual(await policy.decide('private.example', 3141), { addresses: ['10.8.1.2'] });
  // By address, a range allows its own ports only (443 and 80 unless the entry names one).
  assert.deepEqual(await policy.decide('10.8.9.9', 443), { addresses: ['10.8.9.9'] });
  assert.match(JSON.stringify(await policy.decide('10.8.9.9', 6379)), /not an allowed destination/);
  // Addresses: only what a rule names.
  for (const target of ['127.0.0.1', '169.254.169.254', '::1', '198.51.100.2'])
    assert.match(JSON.stringify(await policy.decide(target, 6379)), /not an allowed destination/, target);
});

test('an index configured by address is allowed at that address and port only', async () => {
  const policy = new EgressPolicy(
    egressConfig({ UV_INDEX_URL: 'http://127.0.0.1:3141/simple' }).rules,
    async () => [],
  );
  assert.deepEqual(await policy.decide('127.0.0.1', 3141), { addresses: ['127.0.0.1'] });
  assert.match(JSON.stringify(await policy.decide('127.0.0.1', 16379)), /not an allowed destination/);
});

test('entries: wildcards match subdomains only; ports default to 443 and 80', () => {
  assert.deepEqual(parseEgressEntry('*.Example.org'), {
    kind: 'host',
    host: 'example.org',
    wildcard: true,
    ports: [443, 80],
    from: 'BUILD_EGRESS_ALLOW',
  });
  assert.equal(parseEgressEntry('fd00::/8').kind, 'cidr');
  assert.deepEqual(
    [
      parseEgressEntry('10.8.0.0/16:3141'),
      parseEgressEntry('[fd00::/8]:3141'),
      parseEgressEntry('fd00::/8'),
    ].map((rule) => rule.kind === 'cidr' && `${rule.address}/${rule.prefix} ${rule.ports.join('/')}`),
    ['10.8.0.0/16 3141', 'fd00::/8 3141', 'fd00::/8 443/80'],
  );
});
