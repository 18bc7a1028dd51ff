/**
 * The comedy actor system of one node (in-memory mode: every actor lives in this process).
 * Comedy's own SIGINT/SIGTERM handlers call process.exit; they are removed so the node's
 * graceful shutdown runs instead. `dropMessagesOnOverload` stays off (comedy's default):
 * with it, messages are dropped whenever the event loop lags.
 */
import comedy from 'comedy';

export interface ActorRef {
  send(topic: string, ...args: unknown[]): Promise<void>;
  sendAndReceive(topic: string, ...args: unknown[]): Promise<unknown>;
  destroy(): Promise<void>;
  getId(): string;
}

export interface ParentActor extends ActorRef {
  /** The node spawns only in-memory actors; `threaded` (a behaviour given as a module path) is measured by bench/floors.ts. */
  createChild(behaviour: unknown, options: { mode: 'in-memory' | 'threaded'; name?: string; customParameters?: object }): Promise<ActorRef>;
}

interface ComedySystem {
  rootActor(): Promise<ParentActor>;
  destroy(): Promise<void>;
  sigtermHandler?: () => void;
  sigintHandler?: () => void;
}

export interface ActorSystem {
  root: ParentActor;
  destroy(): Promise<void>;
}

type ComedyFactory = (options: object) => ComedySystem;

export async function createActorSystem(): Promise<ActorSystem> {
  // `test: true` keeps comedy from printing its own unstructured log lines; our actors log through pino.
  const sys = (comedy as unknown as ComedyFactory)({ config: {}, test: true });
  if (sys.sigtermHandler) process.removeListener('SIGTERM', sys.sigtermHandler);
  if (sys.sigintHandler) process.removeListener('SIGINT', sys.sigintHandler);
  const root = await sys.rootActor();
  return { root, destroy: () => sys.destroy() };
}

/** Spawns an in-memory child whose behaviour reads its state from customParameters (shallow-copied by comedy). */
export function spawn<P extends object>(parent: ParentActor, behaviour: new () => object, params: P, name?: string): Promise<ActorRef> {
  return parent.createChild(behaviour, { mode: 'in-memory', name, customParameters: params });
}

/** Comedy hands each behaviour its own actor; this is the part the behaviours use. */
export interface SelfActor {
  getCustomParameters(): object;
  createChild(behaviour: unknown, options: { mode: 'in-memory'; name?: string; customParameters?: object }): Promise<ActorRef>;
}

/**
 * A supervisor: parent of a shard of actors. Only an actor can create its own children in
 * comedy, so spawning goes through its mailbox.
 */
class SupervisorBehaviour {
  private self!: SelfActor;

  initialize(self: SelfActor): void {
    this.self = self;
  }

  spawnChild(behaviour: new () => object, params: object): Promise<ActorRef> {
    return this.self.createChild(behaviour, { mode: 'in-memory', customParameters: params });
  }
}

export class Supervisor {
  private constructor(private readonly ref: ActorRef) {}

  static async start(parent: ParentActor, name: string): Promise<Supervisor> {
    return new Supervisor(await spawn(parent, SupervisorBehaviour, {}, name));
  }

  spawn(behaviour: new () => object, params: object): Promise<ActorRef> {
    return this.ref.sendAndReceive('spawnChild', behaviour, params) as Promise<ActorRef>;
  }
}
