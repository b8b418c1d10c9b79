import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';
import http from 'isomorphic-git/http/node';

const THIN_PACK = ' thin-pack';
const ADVERTISEMENT = '/info/refs?service=git-upload-pack';
const MAX_REDIRECTS = 10;

// Adds `thin-pack` to the capabilities on the first `want` line of an upload-pack request.
export function withThinPack(body: Buffer): Buffer {
  const text = body.toString('latin1');
  const lineLength = Number.parseInt(text.slice(0, 4), 16);
  const line = text.slice(4, lineLength);
  if (!line.startsWith('want ') || !line.includes(' ofs-delta') || line.includes(THIN_PACK)) return body;
  const patched = line.replace(' ofs-delta', ` ofs-delta${THIN_PACK}`);
  const length = (patched.length + 4).toString(16).padStart(4, '0');
  return Buffer.from(`${length}${patched}${text.slice(lineLength)}`, 'latin1');
}

/** The symref isomorphic-git is told HEAD points at when the remote's default branch does not exist. */
export const NO_HEAD = 'refs/ci-runner/no-default-branch';

// A remote whose HEAD names a branch that does not exist advertises neither a HEAD line nor a `symref=HEAD:`
// capability, and isomorphic-git's fetch then fails with "Could not find HEAD." (isomorphic-git #1654) although it
// never uses HEAD. Declaring HEAD a symref to a ref that does not exist is what such a server means.
export function withHeadSymref(advertisement: Buffer): Buffer {
  const text = advertisement.toString('latin1');
  let at = 0;
  while (at + 4 <= text.length) {
    const length = Number.parseInt(text.slice(at, at + 4), 16);
    if (Number.isNaN(length)) return advertisement;
    if (length < 4) {
      at += 4;
      continue;
    }
    const line = text.slice(at + 4, at + length);
    if (line.startsWith('#')) {
      at += length;
      continue;
    }
    const nul = line.indexOf('\0');
    if (nul < 0) return advertisement;
    const name = line.slice(41, nul);
    const capabilities = line.slice(nul + 1).replace(/\n$/, '');
    if (name === 'HEAD' || name === 'capabilities^{}' || capabilities.includes('symref=HEAD:')) {
      return advertisement;
    }
    const patched = `${line.slice(0, nul + 1)}${capabilities} symref=HEAD:${NO_HEAD}\n`;
    const header = (patched.length + 4).toString(16).padStart(4, '0');
    return Buffer.from(`${text.slice(0, at)}${header}${patched}${text.slice(at + length)}`, 'latin1');
  }
  return advertisement;
}

async function collect(body: AsyncIterableIterator<Uint8Array> | Uint8Array[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

async function* once(buffer: Buffer): AsyncIterableIterator<Uint8Array> {
  yield buffer;
}

/** The server refused the request in the git protocol itself (an `ERR` packet line), e.g. a sha it will not send. */
export class RemoteRefusedError extends Error {
  constructor(answer: string) {
    super(answer);
    this.name = 'RemoteRefusedError';
  }
}

// isomorphic-git reads an `ERR` line in an upload-pack response as an empty answer and "succeeds" without the
// objects. Reads the first packet line and throws the server's answer instead; the rest streams through untouched.
async function throwOnErr(
  body: AsyncIterableIterator<Uint8Array>,
): Promise<AsyncIterableIterator<Uint8Array>> {
  const head: Buffer[] = [];
  let size = 0;
  let length = Number.POSITIVE_INFINITY;
  while (size < Math.min(length, 4096)) {
    const next = await body.next();
    if (next.done) break;
    head.push(Buffer.from(next.value));
    size += next.value.length;
    if (size >= 4) length = Number.parseInt(Buffer.concat(head).subarray(0, 4).toString('latin1'), 16) || 4;
  }
  const first = Buffer.concat(head);
  const line = first.subarray(4, Math.min(length, first.length)).toString('utf8');
  if (line.startsWith('ERR ')) throw new RemoteRefusedError(line.slice(4).trim());
  return (async function* () {
    yield first;
    yield* body;
  })();
}

function withoutAuth(headers: GitHttpRequest['headers'] = {}): Record<string, string> {
  return Object.fromEntries(
    Object.entries(headers).filter(([name]) => name.toLowerCase() !== 'authorization'),
  );
}

// A CGI script's own status, where the server sent it on as a header of a 200 (Python's CGI handler answers
// "200 Script output follows" before the script runs): the status git http-backend meant, say 404 for a repository
// that is not there.
function withCgiStatus(response: GitHttpResponse): GitHttpResponse {
  const said = response.headers?.status;
  const found =
    response.statusCode === 200 && typeof said === 'string' ? /^([1-5]\d\d)\s*(.*)$/.exec(said) : null;
  if (!found || found[1] === '200') return response;
  return { ...response, statusCode: Number(found[1]), statusMessage: found[2] ?? '' };
}

// Follows redirects of the ref advertisement itself, as git does, so that the upload-pack request can go to the
// same place (a 301 on a POST would otherwise turn it into a GET). Credentials only go to the origin they were
// given for.
async function discover(request: GitHttpRequest): Promise<{ response: GitHttpResponse; url: string }> {
  let url = request.url;
  let headers = { ...request.headers };
  for (let redirects = 0; ; redirects += 1) {
    const response = await http.request({
      ...request,
      url,
      headers,
      fetchOptions: { followRedirects: false },
    });
    const location = response.headers?.location;
    if (response.statusCode < 300 || response.statusCode >= 400 || !location)
      return { response: withCgiStatus(response), url };
    if (redirects >= MAX_REDIRECTS) throw new Error(`more than ${MAX_REDIRECTS} redirects from ${url}`);
    const next = new URL(location, url);
    if (next.origin !== new URL(url).origin) headers = withoutAuth(headers);
    url = next.href;
  }
}

/**
 * isomorphic-git's Node HTTP client, made to talk to every smart-HTTP server the way git's own client does:
 *  - upload-pack requests carry a Content-Length (never a chunked body: Apache, nginx + fcgiwrap and Python's CGI
 *    handler do not de-chunk CGI input) and ask for thin packs (git's upload-pack otherwise resends every object of
 *    a shallow fetch even when told what the cache already has; isomorphic-git resolves a thin pack's external
 *    deltas from the object store);
 *  - a redirected ref advertisement moves the upload-pack request with it;
 *  - a remote without a default branch is fetched from (see withHeadSymref).
 * One client per fetch: it remembers where the advertisement was redirected to.
 */
export function smartHttp(): HttpClient {
  const moved = new Map<string, string>();
  return {
    async request(request: GitHttpRequest): Promise<GitHttpResponse> {
      if (request.method !== 'POST' && request.url.endsWith(ADVERTISEMENT)) {
        const { response, url } = await discover(request);
        if (url !== request.url && url.endsWith(ADVERTISEMENT)) {
          moved.set(request.url.slice(0, -ADVERTISEMENT.length), url.slice(0, -ADVERTISEMENT.length));
        }
        if (response.statusCode !== 200) return response;
        const body = withHeadSymref(await collect(response.body ?? []));
        return { ...response, body: once(body) };
      }
      if (request.method !== 'POST' || !request.url.endsWith('/git-upload-pack') || !request.body) {
        return http.request(request);
      }
      let url = request.url;
      for (const [from, to] of moved) if (url.startsWith(from)) url = to + url.slice(from.length);
      const headers =
        new URL(url).origin === new URL(request.url).origin ? request.headers : withoutAuth(request.headers);
      const body = withThinPack(await collect(request.body));
      // An array, not a stream: isomorphic-git then sends one buffer with a Content-Length.
      const response = await http.request({
        ...request,
        url,
        headers,
        body: [body] as unknown as GitHttpRequest['body'],
      });
      if (response.statusCode !== 200 || !response.body) return response;
      return { ...response, body: await throwOnErr(response.body) };
    },
  };
}
