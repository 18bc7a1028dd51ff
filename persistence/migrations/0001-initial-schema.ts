/**
 * Migration 1: the three tables as first shipped (later migrations change them; see index.ts).
 * Written as SQL per dialect (rather than generated) so the MySQL side gets a binary collation
 * — user ids are case-sensitive — and explicit key names. `IF NOT EXISTS` keeps it safe if two
 * nodes race past the migration lock. Shipped: never edit, add a migration instead.
 */
import { Migration } from '@mikro-orm/migrations';
import type { Dialect } from '../dialect.ts';

type TableSql = { conversation: string[]; conversation_member: string[]; message: string[] };

const mysql: TableSql = {
  conversation: [`CREATE TABLE IF NOT EXISTS conversation (
    id VARCHAR(140) NOT NULL,
    kind VARCHAR(8) NOT NULL,
    owner_id VARCHAR(64) NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (id)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`],
  conversation_member: [`CREATE TABLE IF NOT EXISTS conversation_member (
    conversation_id VARCHAR(140) NOT NULL,
    user_id VARCHAR(64) NOT NULL,
    role VARCHAR(8) NOT NULL,
    ack_seq BIGINT NOT NULL DEFAULT 0,
    read_seq BIGINT NOT NULL DEFAULT 0,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id),
    KEY idx_member_user (user_id)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`],
  message: [`CREATE TABLE IF NOT EXISTS message (
    conversation_id VARCHAR(140) NOT NULL,
    seq BIGINT NOT NULL,
    mid VARCHAR(20) NOT NULL,
    sender_id VARCHAR(64) NOT NULL,
    cmid VARCHAR(64) NOT NULL,
    kind VARCHAR(32) NOT NULL,
    body LONGTEXT NULL,
    created_at BIGINT NOT NULL,
    recalled_at BIGINT NULL,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE KEY uq_message_mid (mid),
    UNIQUE KEY uq_message_cmid (conversation_id, sender_id, cmid)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`],
};

const sqlite: TableSql = {
  conversation: [`CREATE TABLE IF NOT EXISTS conversation (
    id TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL,
    owner_id TEXT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
  )`],
  conversation_member: [`CREATE TABLE IF NOT EXISTS conversation_member (
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    ack_seq INTEGER NOT NULL DEFAULT 0,
    read_seq INTEGER NOT NULL DEFAULT 0,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
  )`,
  `CREATE INDEX IF NOT EXISTS idx_member_user ON conversation_member (user_id)`],
  message: [`CREATE TABLE IF NOT EXISTS message (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    mid TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    cmid TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NULL,
    created_at INTEGER NOT NULL,
    recalled_at INTEGER NULL,
    PRIMARY KEY (conversation_id, seq)
  )`,
  `CREATE UNIQUE INDEX IF NOT EXISTS uq_message_mid ON message (mid)`,
  `CREATE UNIQUE INDEX IF NOT EXISTS uq_message_cmid ON message (conversation_id, sender_id, cmid)`],
};

const schemaSql: Record<Dialect, TableSql> = { mysql, sqlite };

/** Builds the migration class for one dialect (MikroORM instantiates it itself). */
export function initialSchema(dialect: Dialect) {
  return class InitialSchema extends Migration {
    override up(): void {
      const t = schemaSql[dialect];
      for (const sql of [...t.conversation, ...t.conversation_member, ...t.message]) this.addSql(sql);
    }
  };
}
