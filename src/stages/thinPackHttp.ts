import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';
import http from 'isomorphic-git/http/node';

const CAPABILITY = ' thin-pack';

// Adds `thin-pack` to the capabilities on the first `want` line of an upload-pack request.
export function withThinPack(body: Buffer): Buffer {
  const text = body.toString('latin1');
  const lineLength = Number.parseInt(text.slice(0, 4), 16);
  const line = text.slice(4, lineLength);
  if (!line.startsWith('want ') || !line.includes(' ofs-delta') || line.includes(CAPABILITY)) return body;
  const patched = line.replace(' ofs-delta', ` ofs-delta${CAPABILITY}`);
  const length = (patched.length + 4).toString(16).padStart(4, '0');
  return Buffer.from(`${length}${patched}${text.slice(lineLength)}`, 'latin1');
}

async function collect(body: AsyncIterableIterator<Uint8Array> | Uint8Array[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

// isomorphic-git's Node HTTP client, asking for thin packs: without them git's upload-pack (protocol v0) resends
// every object of a shallow fetch even when told what the cache already has. isomorphic-git resolves a thin pack's
// external deltas from the object store, so a new commit costs only its new objects.
export const thinPackHttp: HttpClient = {
  async request(request: GitHttpRequest): Promise<GitHttpResponse> {
    if (request.method !== 'POST' || !request.url.endsWith('/git-upload-pack') || !request.body) {
      return http.request(request);
    }
    const body = withThinPack(await collect(request.body));
    // An array, not a stream: isomorphic-git then sends one buffer with a Content-Length. A chunked body breaks
    // every server that does not de-chunk CGI input (Apache, nginx + fcgiwrap, Python's CGI handler).
    return http.request({ ...request, body: [body] as unknown as GitHttpRequest['body'] });
  },
};
