import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildEnv, buildLayout } from '../../src/pipeline/layout.js';

test("the package index's credentials reach the install only, never lint or the tests", () => {
  const layout = buildLayout('/work/b1', {
    UV_INDEX_URL: 'https://ci:s3cret@index.example/simple',
    HTTPS_PROXY: 'http://ci:s3cret@proxy.example:3128',
    SSL_CERT_FILE: '/etc/ssl/certs/ca.pem',
  });
  const tests = buildEnv(layout);
  assert.equal(tests.UV_INDEX_URL, undefined);
  assert.equal(tests.HTTPS_PROXY, undefined);
  assert.equal(tests.SSL_CERT_FILE, '/etc/ssl/certs/ca.pem');
  assert.ok(!JSON.stringify(tests).includes('s3cret'));
  const install = buildEnv(layout, {}, { install: true });
  assert.equal(install.UV_INDEX_URL, 'https://ci:s3cret@index.example/simple');
  assert.equal(install.HTTPS_PROXY, 'http://ci:s3cret@proxy.example:3128');
});
