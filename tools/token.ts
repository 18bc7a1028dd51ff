/** `npm run token -- alice [ttlSeconds]`: prints a login token for `alice` signed with the configured secret. */
import { loadConfig } from '../cluster.config.ts';
import { signToken } from '../gateway/auth.ts';

const [user, ttl] = process.argv.slice(2);
if (!user) {
  process.stderr.write('usage: npm run token -- <user> [ttlSeconds]\n');
  process.exit(2);
}
const config = loadConfig();
process.stdout.write(`${await signToken(user, config.jwtSecret, ttl ? Number(ttl) : 24 * 3600)}\n`);
