/**
 * Migration 4: join order of group members again (`conversation_member.joined_at`, ms since the
 * epoch), for `group_leave` (docs/protocol.md, v1.1): when the owner leaves, the longest-standing
 * member (earliest join, then smallest user id) becomes owner. 0002 dropped the column of 0001
 * because nothing read it then; rows that existed before this migration get 0 (their order is the
 * user id). The index (conversation_id, joined_at, user_id) makes the hand-over a seek to the
 * first remaining member instead of a sort of the group.
 *
 * Idempotent like 0002: the column and the index are added only when missing (MySQL has no
 * `ADD COLUMN IF NOT EXISTS` that MariaDB and MySQL share), so a race past the migration lock is
 * harmless.
 */
import { Migration } from '@mikro-orm/migrations';
import type { Dialect } from '../dialect.ts';

export function memberJoinOrder(dialect: Dialect) {
  return class MemberJoinOrder extends Migration {
    override async up(): Promise<void> {
      const hasColumn = dialect === 'mysql'
        ? await this.execute(`SELECT 1 AS x FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'conversation_member' AND column_name = 'joined_at'`)
        : await this.execute(`SELECT 1 AS x FROM pragma_table_info('conversation_member') WHERE name = 'joined_at'`);
      if (hasColumn.length === 0) {
        await this.execute(dialect === 'mysql'
          ? 'ALTER TABLE conversation_member ADD COLUMN joined_at BIGINT NOT NULL DEFAULT 0'
          : 'ALTER TABLE conversation_member ADD COLUMN joined_at INTEGER NOT NULL DEFAULT 0');
      }
      if (dialect === 'mysql') {
        const hasIndex = await this.execute(`SELECT 1 AS x FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'conversation_member' AND index_name = 'idx_member_join'`);
        if (hasIndex.length === 0) await this.execute('CREATE INDEX idx_member_join ON conversation_member (conversation_id, joined_at, user_id)');
      } else {
        await this.execute('CREATE INDEX IF NOT EXISTS idx_member_join ON conversation_member (conversation_id, joined_at, user_id)');
      }
    }
  };
}
