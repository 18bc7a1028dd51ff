/** Login tokens: HS256 JWTs signed with the node secret (jose). `sub` is the user id. */
import { SignJWT, jwtVerify, errors } from 'jose';
import { NAME_RE } from '../protocol/ids.ts';

export interface Identity { user: string; /** Expiry in epoch ms (every accepted token has one). */ expMs: number }

/**
 * The HMAC key of the node secret, imported once (WebCrypto). Handing jose the raw bytes would
 * import a fresh native key on every login (and sign), freed only when the GC gets to its
 * wrapper. One secret per node: the last one is kept.
 */
let cachedKey: { secret: string; key: Promise<CryptoKey> } | null = null;
function keyOf(secret: string): Promise<CryptoKey> {
  if (cachedKey?.secret !== secret) {
    const key = crypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
    cachedKey = { secret, key };
  }
  return cachedKey.key;
}

export async function signToken(user: string, secret: string, ttlSeconds = 24 * 3600): Promise<string> {
  if (!NAME_RE.test(user)) throw new Error(`user id must be 1-64 chars of [A-Za-z0-9_.-], got "${user}"`);
  return new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(user).setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds).sign(await keyOf(secret));
}

/**
 * Verifies signature, `exp` and `sub`; throws AuthError with a reason a client can act on.
 * A token without `exp` would be valid forever: it is refused like an expired one (protocol v1.1).
 */
export async function verifyToken(token: string, secret: string): Promise<Identity> {
  try {
    const { payload } = await jwtVerify(token, await keyOf(secret), { algorithms: ['HS256'], requiredClaims: ['exp'] });
    if (typeof payload.sub !== 'string' || !NAME_RE.test(payload.sub)) throw new AuthError('token "sub" must be a user id of 1-64 chars of [A-Za-z0-9_.-]');
    if (typeof payload.exp !== 'number') throw new AuthError('token has no "exp": tokens must expire');
    return { user: payload.sub, expMs: payload.exp * 1000 };
  } catch (e) {
    if (e instanceof AuthError) throw e;
    if (e instanceof errors.JWTExpired) throw new AuthError('token expired');
    if (e instanceof errors.JWTClaimValidationFailed && e.claim === 'exp') throw new AuthError('token has no valid "exp": tokens must expire');
    if (e instanceof errors.JWSSignatureVerificationFailed) throw new AuthError('token signature is invalid');
    throw new AuthError(`token rejected: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export class AuthError extends Error {
  override name = 'AuthError';
}
