/** NATS subjects between nodes. Everything a node sends another travels on one of these. */
export const subjects = {
  /** Heartbeats of every node (membership). */
  heartbeat: 'im.node.hb',
  /** A node is leaving (graceful shutdown): drop it at once instead of after the TTL. */
  leaving: 'im.node.leave',
  /** Conversation requests for the owner node `id` (request/reply). */
  conv: (id: string) => `im.conv.${id}`,
  /** Pushes and events for the sessions on node `id` (one message per (message, node)). */
  deliver: (id: string) => `im.deliver.${id}`,
  /** Presence changes, as requests to each node so the sender knows they are applied. */
  presence: (id: string) => `im.presence.${id}`,
  /** Request the devices connected to node `id` (when it joins or rejoins the live set). */
  presenceSnapshot: (id: string) => `im.presence-snapshot.${id}`,
  /** Server API requests about the sessions on node `id` (disconnect; request/reply). */
  api: (id: string) => `im.api.${id}`,
} as const;

/** Node ids become subject tokens: keep them to characters NATS accepts there. */
export const subjectSafe = (nodeId: string): string => nodeId.replace(/[^A-Za-z0-9_-]/g, '_');
