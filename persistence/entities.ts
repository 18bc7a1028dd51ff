/**
 * MikroORM entities of the record. The same three tables run on MySQL/MariaDB and SQLite.
 * Table and column names of `message` are read by outside tools: keep them.
 *
 * Times are epoch milliseconds (BIGINT) so they compare and round-trip identically on both
 * databases; `mid` is a decimal string because 63-bit snowflakes do not fit a JS number.
 * `body` holds the message's JSON text exactly as the client sent it.
 */
import { EntitySchema } from '@mikro-orm/core';

export interface Conversation {
  id: string;
  kind: 'dm' | 'group';
  ownerId: string | null;
  lastSeq: number;
  createdAt: number;
}

export interface ConversationMember {
  conversationId: string;
  userId: string;
  role: 'owner' | 'member';
  ackSeq: number;
  readSeq: number;
  joinedAt: number;
}

export interface Message {
  conversationId: string;
  seq: number;
  mid: string;
  senderId: string;
  cmid: string;
  kind: string;
  body: string | null;
  createdAt: number;
  recalledAt: number | null;
}

export const ConversationEntity = new EntitySchema<Conversation>({
  name: 'Conversation',
  tableName: 'conversation',
  properties: {
    id: { type: 'string', primary: true, length: 140 },
    kind: { type: 'string', length: 8 },
    ownerId: { type: 'string', fieldName: 'owner_id', length: 64, nullable: true },
    lastSeq: { type: 'number', fieldName: 'last_seq', columnType: 'bigint', default: 0 },
    createdAt: { type: 'number', fieldName: 'created_at', columnType: 'bigint' },
  },
});

export const ConversationMemberEntity = new EntitySchema<ConversationMember>({
  name: 'ConversationMember',
  tableName: 'conversation_member',
  indexes: [{ name: 'idx_member_user', properties: ['userId'] }],
  properties: {
    conversationId: { type: 'string', primary: true, fieldName: 'conversation_id', length: 140 },
    userId: { type: 'string', primary: true, fieldName: 'user_id', length: 64 },
    role: { type: 'string', length: 8 },
    ackSeq: { type: 'number', fieldName: 'ack_seq', columnType: 'bigint', default: 0 },
    readSeq: { type: 'number', fieldName: 'read_seq', columnType: 'bigint', default: 0 },
    joinedAt: { type: 'number', fieldName: 'joined_at', columnType: 'bigint' },
  },
});

export const MessageEntity = new EntitySchema<Message>({
  name: 'Message',
  tableName: 'message',
  uniques: [
    { name: 'uq_message_mid', properties: ['mid'] },
    { name: 'uq_message_cmid', properties: ['conversationId', 'senderId', 'cmid'] },
  ],
  properties: {
    conversationId: { type: 'string', primary: true, fieldName: 'conversation_id', length: 140 },
    seq: { type: 'number', primary: true, columnType: 'bigint' },
    mid: { type: 'string', length: 20 },
    senderId: { type: 'string', fieldName: 'sender_id', length: 64 },
    cmid: { type: 'string', length: 64 },
    kind: { type: 'string', length: 32 },
    body: { type: 'text', nullable: true },
    createdAt: { type: 'number', fieldName: 'created_at', columnType: 'bigint' },
    recalledAt: { type: 'number', fieldName: 'recalled_at', columnType: 'bigint', nullable: true },
  },
});

export const entities = [ConversationEntity, ConversationMemberEntity, MessageEntity];
