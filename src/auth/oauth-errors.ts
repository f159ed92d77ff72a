import type { Problem } from '../plugins/problem.js';

/**
 * RFC 6749 §5.2 error codes the token endpoint answers with. invalid_client (401) is absent: the
 * endpoint takes public clients only and authenticates none. temporarily_unavailable (§4.1.2.1) goes
 * with 429 for the sign-in limit, which §5.2 does not cover.
 */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_grant'
  | 'unsupported_grant_type'
  | 'temporarily_unavailable';

export interface OAuthError {
  error: OAuthErrorCode;
  error_description: string;
}

export interface OAuthAnswer {
  status: number;
  body: OAuthError;
}

export const oauthError = (error: OAuthErrorCode, description: string, status = 400): OAuthAnswer => ({
  status,
  body: { error, error_description: description },
});

/** HTTP statuses that say more than 400 about a malformed request, kept with the OAuth body. */
const KEPT_STATUSES: ReadonlySet<number> = new Set([413, 415]);

/**
 * A client error the framework or the schema raised, as §5.2 says it: a grant_type other than the two
 * supported is unsupported_grant_type, anything else malformed is invalid_request (400; 413 and 415
 * keep their status). Server errors are not OAuth errors: undefined.
 */
export function oauthErrorOfProblem(problem: Problem): OAuthAnswer | undefined {
  if (problem.status >= 500) return undefined;
  if (problem.errors?.some((error) => error.field === 'grant_type' && error.message !== 'is required'))
    return oauthError('unsupported_grant_type', 'grant_type must be password or refresh_token');
  return oauthError(
    'invalid_request',
    problem.detail,
    KEPT_STATUSES.has(problem.status) ? problem.status : 400,
  );
}
