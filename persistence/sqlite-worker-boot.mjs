// Entry of the SQLite worker thread. Node 20 does not apply `--import tsx` to worker threads,
// so the TypeScript loader is registered here before the real (TypeScript) entry is loaded.
import { register } from 'tsx/esm/api';

register();
await import('./sqlite-worker.ts');
