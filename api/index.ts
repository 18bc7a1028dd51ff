/**
 * Builds a node's server API (docs/api.md) from the node's parts; node.ts calls this once the
 * session manager exists and hands the result to the gateway. In a cluster it also starts
 * answering other nodes' disconnect requests for the sessions here.
 */
import type { NodeConfig } from '../cluster.config.ts';
import type { ConversationService } from '../actors/conversation-protocol.ts';
import type { SessionDirectory } from '../actors/session-directory.ts';
import type { SessionManager } from '../actors/session-manager.ts';
import type { ClusterRuntime } from '../cluster/cluster-runtime.ts';
import type { Logger } from '../core/logger.ts';
import type { RecordStore } from '../persistence/message-store.ts';
import { HttpApi } from './http-api.ts';
import { apiKeysOf } from './keys.ts';
import { ClusterUsers, LocalUsers, type UserAdmin } from './users.ts';

export { HttpApi } from './http-api.ts';

export interface ServerApiParts {
  config: NodeConfig;
  log: Logger;
  conversations: ConversationService;
  /** The record behind the pending-cursor overlay: cursors read include moves not yet written. */
  store: Pick<RecordStore, 'userConversations' | 'readableFile'>;
  directory: SessionDirectory;
  sessions: SessionManager;
  cluster: ClusterRuntime | null;
}

export function startServerApi(p: ServerApiParts): HttpApi {
  const local = new LocalUsers(p.cluster ? p.cluster.self : p.config.nodeId, p.directory, p.sessions);
  let users: UserAdmin = local;
  if (p.cluster) {
    const cu = new ClusterUsers(p.cluster.self, local, p.cluster.presence, p.cluster.nats, p.config.clusterRequestTimeoutMs, p.log);
    cu.listen();
    users = cu;
  }
  return new HttpApi({
    config: p.config, keys: apiKeysOf(p.config), log: p.log, conversations: p.conversations, store: p.store, users,
  });
}
