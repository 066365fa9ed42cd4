// A certified OpenID Provider (`oidc-provider`) for the identity tests: `node provider.mjs PORT`
// serves http://127.0.0.1:PORT with its own development sign-in pages (any user name signs in),
// a public native client `countersign` (authorization code with PKCE, loopback redirects, the
// device authorization grant), users in groups, and keys it can rotate on request
// (POST /test/rotate: a new signing key first in its JWKS). Prints "ready" when it listens.
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK } from 'jose';

const port = Number(process.argv[2] || 0);
const issuer = `http://127.0.0.1:${port}`;

// People and their groups, as an organisation's directory would have them.
const people = {
  alice: { email: 'Alice@Example.com', name: 'Alice Example', groups: ['okta-security', 'everyone'] },
  bob: { email: 'bob@example.com', name: 'Bob Example', groups: ['everyone'] },
  jose: { email: 'josé@example.com', name: 'José Example', groups: ['okta-security'] },
};

async function signingKey(kid) {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' };
}

let generation = 1;
const keys = [await signingKey(`k${generation}`)];

function configuration() {
  return {
    clients: [{
      client_id: 'countersign',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      response_types: ['code'],
      id_token_signed_response_alg: 'ES256',
    }],
    jwks: { keys },
    pkce: { required: () => true },
    // The ID token carries the scopes' claims (email, groups), as IdPs are configured to for
    // relying parties that read them from it.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: true },
    },
    claims: {
      openid: ['sub'],
      email: ['email'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
    async findAccount(ctx, id) {
      const person = people[id];
      if (!person) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, ...person };
        },
      };
    },
  };
}

let provider = new Provider(issuer, configuration());
provider.proxy = false;

import http from 'node:http';
const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/test/rotate') {
    generation += 1;
    signingKey(`k${generation}`).then((key) => {
      keys.unshift(key);
      provider = new Provider(issuer, configuration());
      res.writeHead(204);
      res.end();
    });
    return;
  }
  provider.callback()(req, res);
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${server.address().port}\n`);
});
