import { type Logger, pino } from 'pino';

export type { Logger } from 'pino';

const REDACT = [
  'password',
  '*.password',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
];

// One pino logger per process: JSON for machines, readable when asked for or on a terminal, credentials redacted.
export function createLogger(options: { level: string; pretty: boolean | undefined; name: string }): Logger {
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  return pino({
    name: options.name,
    level: options.level,
    redact: { paths: REDACT, censor: '[redacted]' },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true } } } : {}),
  });
}

// Removes user:password from a URL before it is logged, stored or published.
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.username && !parsed.password) return url;
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return url;
  }
}
