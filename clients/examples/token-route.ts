/**
 * Server side of the Next.js app (a route handler): mint relay tokens. The secret stays here;
 * the browser only ever sees a short-lived token. Exercised by test/auth.test.ts.
 */
// #region mint-token
import { SignJWT } from "jose";

/** A token relay accepts on /logs (second subprotocol) and the API (Bearer or ?token=). */
export async function relayToken(userId: string, sessionId?: string): Promise<string> {
  const secret = new TextEncoder().encode(process.env.RELAY_AUTH_SECRET!); // >= 32 bytes
  return new SignJWT(sessionId ? { sid: sessionId } : {})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(userId)
    .setAudience(process.env.RELAY_AUTH_AUDIENCE ?? "relay")
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(secret);
}
// #endregion mint-token

// #region token-route
/**
 * app/api/relay-token/route.ts:
 *   export const POST = relayTokenRoute(async () => (await auth())?.user?.id ?? null);
 * where `auth()` is your app's session lookup (NextAuth, Clerk, …).
 */
export function relayTokenRoute(authenticate: (request: Request) => Promise<string | null>) {
  return async function POST(request: Request): Promise<Response> {
    const userId = await authenticate(request);
    if (!userId) return Response.json({ error: "sign in first" }, { status: 401 });
    // Binding the token to the session (sid) means a leaked token opens nothing else.
    const sessionId = new URL(request.url).searchParams.get("sessionId") ?? undefined;
    return Response.json({ token: await relayToken(userId, sessionId) });
  };
}
// #endregion token-route
