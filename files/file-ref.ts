/**
 * File ids and how a message refers to a file (docs/protocol.md, Files): a message of kind
 * `"file"` whose body is an object holding `"file":"<id>"`. Shared by the send check
 * (UserSession) and the commit that records the reference (MessageStore.insertMessages).
 */
import { randomBytes } from 'node:crypto';

/** The kind of a message that refers to a file. */
export const FILE_KIND = 'file';

/** 128 random bits, base64url: 22 characters of [A-Za-z0-9_-]. */
export const FILE_ID_RE = /^[A-Za-z0-9_-]{22}$/;

export function newFileId(): string {
  return randomBytes(16).toString('base64url');
}

/** The file id a message body refers to, or null when it holds none (or not a well-formed one). */
export function fileIdOf(body: unknown): string | null {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return null;
  const id = (body as Record<string, unknown>).file;
  return typeof id === 'string' && FILE_ID_RE.test(id) ? id : null;
}

/** The same, from the body's stored JSON text (parsed only for `file` messages). */
export function fileIdOfJson(bodyJson: string): string | null {
  try {
    return fileIdOf(JSON.parse(bodyJson));
  } catch {
    return null;
  }
}

/** A file's metadata as the record holds it. */
export interface FileMeta {
  id: string;
  uploader: string;
  name: string;
  size: number;
  mime: string;
  /** Hex. */
  sha256: string;
  created: number;
}
