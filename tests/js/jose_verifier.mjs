// A service that verifies access tokens the way one written in Node would: with the `jose` package
// from npm, the JWK Set fetched from the app's /auth/jwks.json, and no secret.
//
//   node tests/js/jose_verifier.mjs [cacheMaxAgeMs]
//
// Reads lines "<jwks url>\t<access token>" on stdin and writes one JSON line per token:
// {"ok": true, "sub", "kid", "alg"} or {"ok": false, "code", "message"}. One remote key set per URL
// is kept for the life of the process, so its cache (cacheMaxAge, default jose's own) carries over
// from token to token, as in a long-running verifier. Started by tests/integration/test_jwks.py.
// Not named *.test.mjs: tests/run would run it under `node --test`.

import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

// jose is a development dependency of static/package.json, installed in static/node_modules.
const fromStatic = createRequire(new URL('../../static/package.json', import.meta.url));
const { createRemoteJWKSet, jwtVerify } = await import(pathToFileURL(fromStatic.resolve('jose')).href);

const cacheMaxAge = process.argv[2] ? Number(process.argv[2]) : undefined;
const keySets = new Map();

function keySetOf(url) {
  if (!keySets.has(url)) {
    keySets.set(url, createRemoteJWKSet(new URL(url), cacheMaxAge === undefined ? {} : { cacheMaxAge }));
  }
  return keySets.get(url);
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const [url, token] = line.split('\t');
  let answer;
  try {
    // typ: the library's access tokens are RFC 9068 "at+jwt"; an ID token or a refresh token is not.
    const { payload, protectedHeader } = await jwtVerify(token, keySetOf(url), { typ: 'at+jwt' });
    answer = { ok: true, sub: payload.sub, kid: protectedHeader.kid, alg: protectedHeader.alg };
  } catch (error) {
    answer = { ok: false, code: error.code ?? error.name, message: String(error.message) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
