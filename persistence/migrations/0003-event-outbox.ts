/**
 * Migration 3: the event outbox (docs/api.md, Events). A row is written in the same transaction
 * as the fact it describes and deleted once every sink confirmed it; its id is the event's id.
 * `message.created` rows carry no payload: the relay reads the message by (conv, seq). The
 * (node, id) key serves the relay's "oldest rows of these nodes" reads, (conv, id) its check
 * that no other node still holds an older event of the same conversation.
 */
import { Migration } from '@mikro-orm/migrations';
import type { Dialect } from '../dialect.ts';

const SQL: Record<Dialect, string[]> = {
  mysql: [`CREATE TABLE IF NOT EXISTS event_outbox (
    id BIGINT NOT NULL AUTO_INCREMENT,
    node VARCHAR(64) NOT NULL,
    type VARCHAR(32) NOT NULL,
    conv VARCHAR(140) NULL,
    seq BIGINT NULL,
    ts BIGINT NOT NULL,
    data LONGTEXT NULL,
    PRIMARY KEY (id),
    KEY idx_outbox_node (node, id),
    KEY idx_outbox_conv (conv, id)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`],
  sqlite: [`CREATE TABLE IF NOT EXISTS event_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    type TEXT NOT NULL,
    conv TEXT NULL,
    seq INTEGER NULL,
    ts INTEGER NOT NULL,
    data TEXT NULL
  )`,
  `CREATE INDEX IF NOT EXISTS idx_outbox_node ON event_outbox (node, id)`,
  `CREATE INDEX IF NOT EXISTS idx_outbox_conv ON event_outbox (conv, id)`],
};

export function eventOutbox(dialect: Dialect) {
  return class EventOutbox extends Migration {
    override async up(): Promise<void> {
      for (const sql of SQL[dialect]) await this.execute(sql);
    }
  };
}
