/** Login tokens: HS256 JWTs signed with the node secret (jose). `sub` is the user id. */
import { SignJWT, jwtVerify, errors } from 'jose';
import { NAME_RE } from '../protocol/ids.ts';

export interface Identity { user: string; /** Expiry in epoch ms, or null when the token has none. */ expMs: number | null }

const keyOf = (secret: string) => new TextEncoder().encode(secret);

export async function signToken(user: string, secret: string, ttlSeconds = 24 * 3600): Promise<string> {
  if (!NAME_RE.test(user)) throw new Error(`user id must be 1-64 chars of [A-Za-z0-9_.-], got "${user}"`);
  return new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(user).setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds).sign(keyOf(secret));
}

/** Verifies signature, `exp` and `sub`; throws AuthError with a reason a client can act on. */
export async function verifyToken(token: string, secret: string): Promise<Identity> {
  try {
    const { payload } = await jwtVerify(token, keyOf(secret), { algorithms: ['HS256'] });
    if (typeof payload.sub !== 'string' || !NAME_RE.test(payload.sub)) throw new AuthError('token "sub" must be a user id of 1-64 chars of [A-Za-z0-9_.-]');
    return { user: payload.sub, expMs: typeof payload.exp === 'number' ? payload.exp * 1000 : null };
  } catch (e) {
    if (e instanceof AuthError) throw e;
    if (e instanceof errors.JWTExpired) throw new AuthError('token expired');
    if (e instanceof errors.JWSSignatureVerificationFailed) throw new AuthError('token signature is invalid');
    throw new AuthError(`token rejected: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export class AuthError extends Error {
  override name = 'AuthError';
}
