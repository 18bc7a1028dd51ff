/**
 * Migration 5: files (docs/protocol.md, Files). `file` holds the metadata of an upload (the bytes
 * live in the node's file store: a directory, or the NATS object store of a cluster); `file_ref`
 * records, in the same transaction as the message, that a `kind:"file"` message refers to a file.
 * The read check is then seeks only: file_ref by (file_id, …), the message by its primary key
 * (not recalled), the reader's conversation_member row by its primary key.
 */
import { Migration } from '@mikro-orm/migrations';
import type { Dialect } from '../dialect.ts';

const SQL: Record<Dialect, string[]> = {
  mysql: [`CREATE TABLE IF NOT EXISTS file (
    id VARCHAR(32) NOT NULL,
    uploader_id VARCHAR(64) NOT NULL,
    name VARCHAR(255) NOT NULL,
    size BIGINT NOT NULL,
    mime VARCHAR(255) NOT NULL,
    sha256 CHAR(64) NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (id)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
  `CREATE TABLE IF NOT EXISTS file_ref (
    file_id VARCHAR(32) NOT NULL,
    conversation_id VARCHAR(140) NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (file_id, conversation_id, seq)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`],
  sqlite: [`CREATE TABLE IF NOT EXISTS file (
    id TEXT NOT NULL PRIMARY KEY,
    uploader_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    mime TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL
  )`,
  `CREATE TABLE IF NOT EXISTS file_ref (
    file_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (file_id, conversation_id, seq)
  )`],
};

export function files(dialect: Dialect) {
  return class Files extends Migration {
    override async up(): Promise<void> {
      for (const sql of SQL[dialect]) await this.execute(sql);
    }
  };
}
