/**
 * Migration 2: drops the columns that were written but never read — `conversation.last_seq`
 * (a lazily written hint; the last seq always comes from the `message` primary key),
 * `conversation.created_at` and `conversation_member.joined_at`. Each column is dropped only if
 * it exists (MySQL has no `DROP COLUMN IF EXISTS`), so a re-run or a race past the migration
 * lock is harmless.
 */
import { Migration } from '@mikro-orm/migrations';
import type { Dialect } from '../dialect.ts';

const DROPS: Array<{ table: string; column: string }> = [
  { table: 'conversation', column: 'last_seq' },
  { table: 'conversation', column: 'created_at' },
  { table: 'conversation_member', column: 'joined_at' },
];

export function dropUnreadColumns(dialect: Dialect) {
  return class DropUnreadColumns extends Migration {
    override async up(): Promise<void> {
      for (const { table, column } of DROPS) {
        const rows = dialect === 'mysql'
          ? await this.execute('SELECT 1 AS x FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?', [table, column])
          : await this.execute(`SELECT 1 AS x FROM pragma_table_info('${table}') WHERE name = ?`, [column]);
        if (rows.length > 0) await this.execute(`ALTER TABLE ${table} DROP COLUMN ${column}`);
      }
    }
  };
}
