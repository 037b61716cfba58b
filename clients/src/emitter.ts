/** A minimal typed event emitter; a throwing listener is reported, not allowed to break the client. */
export class Emitter<Events extends object> {
  private listeners = new Map<keyof Events, Set<(payload: never) => void>>();

  /** Listen; returns the function that stops listening. */
  on<K extends keyof Events>(type: K, listener: (payload: Events[K]) => void): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(listener as (payload: never) => void);
    return () => { set.delete(listener as (payload: never) => void); };
  }

  emit<K extends keyof Events>(type: K, payload: Events[K]): void {
    for (const listener of [...(this.listeners.get(type) ?? [])]) {
      try {
        (listener as (payload: Events[K]) => void)(payload);
      } catch (error) {
        // Surface it like an uncaught error without unwinding the client's own bookkeeping.
        queueMicrotask(() => { throw error; });
      }
    }
  }

  clear(): void {
    this.listeners.clear();
  }
}
