/**
 * The schema of the record, as the ordered list of MikroORM migrations: the only definition of
 * the tables (there are no entity copies; queries are SQL in message-store.ts). A database at any
 * earlier step is brought forward by the migrations it has not run yet. Names are what
 * `mikro_orm_migrations` records: never rename or reorder one that has shipped.
 */
import type { Dialect } from '../dialect.ts';
import { initialSchema } from './0001-initial-schema.ts';
import { dropUnreadColumns } from './0002-drop-unread-columns.ts';
import { eventOutbox } from './0003-event-outbox.ts';
import { memberJoinOrder } from './0004-member-join-order.ts';
import { files } from './0005-files.ts';

export function migrationsFor(dialect: Dialect) {
  return [
    { name: '0001_initial_schema', class: initialSchema(dialect) },
    { name: '0002_drop_unread_columns', class: dropUnreadColumns(dialect) },
    { name: '0003_event_outbox', class: eventOutbox(dialect) },
    { name: '0004_member_join_order', class: memberJoinOrder(dialect) },
    { name: '0005_files', class: files(dialect) },
  ];
}
