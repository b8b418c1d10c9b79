import { type Env, optional } from './configValues.js';
import { ConfigError } from './errors.js';

/** Variables a build needs from its host to reach a package index: TLS trust, proxies, index locations. */
const DEFAULT_PASSTHROUGH = [
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'REQUESTS_CA_BUNDLE',
  'PIP_CERT',
  'PIP_INDEX_URL',
  'PIP_EXTRA_INDEX_URL',
  'PIP_FIND_LINKS',
  'UV_INDEX_URL',
  'UV_DEFAULT_INDEX',
  'UV_EXTRA_INDEX_URL',
  'UV_INDEX',
  'UV_NATIVE_TLS',
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'http_proxy',
  'https_proxy',
  'no_proxy',
];

/**
 * What reaches a package index or a proxy (their URLs may carry credentials) or looks like a credential by its name
 * (an operator's `UV_INDEX_<NAME>_PASSWORD`, a token): given to install only.
 */
const INSTALL_ONLY = /INDEX|FIND_LINKS|PROXY|PASSWORD|TOKEN|SECRET|CREDENTIAL|NETRC|_AUTH|^PIP_/i;

/** Whether a passed-through variable reaches the install only. */
export function installOnly(name: string): boolean {
  return INSTALL_ONLY.test(name);
}

export function buildEnv(env: Env): Readonly<Record<string, string>> {
  const extra = (optional(env, 'BUILD_ENV_PASSTHROUGH') ?? '').split(',').map((name) => name.trim());
  const names = [...DEFAULT_PASSTHROUGH, ...extra.filter(Boolean)];
  const bad = names.find((name) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name));
  if (bad) throw new ConfigError(`BUILD_ENV_PASSTHROUGH must list variable names, got "${bad}"`);
  // The artefact store's credentials are the runner's: never a build's.
  const secret = names.find((name) => /^AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)$/.test(name));
  if (secret) throw new ConfigError(`BUILD_ENV_PASSTHROUGH may not pass ${secret} to builds`);
  const inherited: Record<string, string> = {};
  for (const name of names) {
    const value = env[name];
    if (value !== undefined) inherited[name] = value;
  }
  return Object.freeze(inherited);
}
