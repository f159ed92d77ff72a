// The typed client of this API: openapi-fetch over the types generated from openapi.json
// (`npm run client:generate` rewrites openapi.json and schema.d.ts; this file is written by hand).
import createClient, { type Client } from 'openapi-fetch';
import type { paths } from './schema.js';

export type { components, operations, paths } from './schema.js';
export type ApiClient = Client<paths>;

/** RFC 6749 §5.1 answer of POST /api/auth/token. */
export type TokenResponse = paths['/api/auth/token']['post']['responses'][200]['content']['application/json'];

/**
 * A client for `baseUrl` (e.g. http://127.0.0.1:3000). Paths, parameters, bodies and answers are
 * typed from the document: `api.POST('/api/items', { body: { name: 'x' } })`.
 */
export function createApiClient(baseUrl: string, options: { accessToken?: string } = {}): ApiClient {
  const client = createClient<paths>({ baseUrl });
  const { accessToken } = options;
  if (accessToken)
    client.use({
      onRequest: ({ request }) => {
        request.headers.set('authorization', `Bearer ${accessToken}`);
        return request;
      },
    });
  return client;
}

/** Sign in (OAuth2 password grant) and return a client that sends the access token, and the tokens. */
export async function signIn(
  baseUrl: string,
  email: string,
  password: string,
): Promise<{ api: ApiClient; tokens: TokenResponse }> {
  const { data, error, response } = await createApiClient(baseUrl).POST('/api/auth/token', {
    body: { grant_type: 'password', username: email, password },
  });
  if (!data) {
    // RFC 6749 §5.2 errors (error, error_description); a 5xx is problem+json (detail).
    const reason = error && ('error_description' in error ? error.error_description : error.detail);
    throw new Error(`sign-in failed: ${response.status} ${reason ?? ''}`);
  }
  return { api: createApiClient(baseUrl, { accessToken: data.access_token }), tokens: data };
}
