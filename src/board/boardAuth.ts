import { timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';

function same(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

// HTTP basic authentication for every board route: a wrong or missing password gets 401 and no page content.
export function basicAuth(username: string, password: string) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const header = req.headers.authorization ?? '';
    const [scheme, encoded] = header.split(' ');
    const [user = '', ...rest] = Buffer.from(encoded ?? '', 'base64')
      .toString('utf8')
      .split(':');
    if (scheme === 'Basic' && same(user, username) && same(rest.join(':'), password)) {
      next();
      return;
    }
    res.status(401).set('WWW-Authenticate', 'Basic realm="ci-runner", charset="UTF-8"').end();
  };
}
