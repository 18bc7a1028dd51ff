/**
 * Files on a node (docs/protocol.md, Files): picks the file store — the NATS JetStream object
 * store `im-files` in a cluster, IM_DATA_DIR/files otherwise — and builds the HTTP handlers the
 * gateway routes POST /files and GET /files/<id> to.
 */
import { join } from 'node:path';
import type { NodeConfig } from '../cluster.config.ts';
import type { Logger } from '../core/logger.ts';
import { KeyedRateLimiter } from '../core/token-bucket.ts';
import type { ClusterRuntime } from '../cluster/cluster-runtime.ts';
import type { RecordStore } from '../persistence/message-store.ts';
import { FsFileStore, NatsFileStore, type FileStore } from './file-store.ts';
import { FilesHttp } from './http-files.ts';

export interface FilesDeps {
  config: NodeConfig;
  log: Logger;
  store: Pick<RecordStore, 'insertFile' | 'readableFile'>;
  cluster: ClusterRuntime | null;
}

export async function startFiles({ config, log, store, cluster }: FilesDeps): Promise<FilesHttp> {
  const files: FileStore = cluster
    ? new NatsFileStore(cluster.nats.connection, { timeoutMs: Math.max(10_000, config.clusterRequestTimeoutMs) })
    : await FsFileStore.open(join(config.dataDir, 'files'));
  const uploads = new KeyedRateLimiter(config.uploadsPerMin / 60, config.uploadsPerMin);
  return new FilesHttp({ jwtSecret: config.jwtSecret, maxFileBytes: config.maxFileBytes, uploads, store, files, log });
}
