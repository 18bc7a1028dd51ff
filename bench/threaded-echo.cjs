// A comedy actor for bench/floors.ts, loaded by comedy in a worker thread (`mode: 'threaded'`)
// from this path, relative to the project root. It answers a group commit's batch with its row
// count and does nothing else: what is timed is comedy's own round trip.
module.exports = class ThreadedEcho {
  insertMessages(m) {
    return m.rows.length;
  }
};
