/** The user every test server creates at start (FIRST_USER_*), to sign in as. */
export const TEST_USER = { email: 'tester@example.com', password: 'correct horse battery staple' };
export const TEST_USER_ENV = { FIRST_USER_EMAIL: TEST_USER.email, FIRST_USER_PASSWORD: TEST_USER.password };

/** Sign in over HTTP (password grant, form) and return the headers protected routes need. */
export async function signInOverHttp(baseUrl: string): Promise<{ authorization: string }> {
  const response = await fetch(`${baseUrl}/api/auth/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'password',
      username: TEST_USER.email,
      password: TEST_USER.password,
    }),
    signal: AbortSignal.timeout(10_000),
  });
  if (response.status !== 200) throw new Error(`sign-in failed: ${response.status} ${await response.text()}`);
  return { authorization: `Bearer ${((await response.json()) as { access_token: string }).access_token}` };
}
