/**
 * docs/protocol.md against nodes whose record is a real MariaDB started by the harness (loopback,
 * temp datadir). Each node gets its own database on that server, so nodes that are not a
 * cluster never share conversations. If MariaDB cannot start, every test here fails.
 */
import { createConnection } from 'mysql2/promise';
import { startMariaDB } from '../harness/servers.ts';
import { defineProtocolSuite } from './protocol-suite.ts';

defineProtocolSuite('mariadb', async () => {
  const db = await startMariaDB();
  return {
    async nodeEnv(name: string) {
      const database = `im_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
      const c = await createConnection({ host: db.host, port: db.port, user: 'root' });
      try {
        await c.query(`CREATE DATABASE IF NOT EXISTS \`${database}\` CHARACTER SET utf8mb4`);
      } finally {
        await c.end().catch(() => c.destroy());
      }
      return { IM_MYSQL_URL: `mysql://root@${db.host}:${db.port}/${database}` };
    },
    teardown: () => db.stop(),
  };
});
