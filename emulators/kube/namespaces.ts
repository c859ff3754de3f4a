/**
 * The namespace lifecycle a cluster's controllers provide: the built-in namespaces, a `default`
 * service account in every namespace, refusing writes into missing or terminating namespaces, and
 * emptying a deleted namespace before it disappears. Deletion here is immediate: contents are
 * removed at once (pods included), then the namespace.
 */
import { forbidden, notFound } from './api-errors.ts';
import type { Logger } from '../../lib/log.ts';
import type { KObject } from './object.ts';
import type { ObjectService } from './objects.ts';
import { storageKey, type ResourceRegistry } from './resources.ts';
import type { Store } from './store.ts';

const BUILTIN_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];
const NS_KEY = '/namespaces';
const SA_KEY = '/serviceaccounts';

export class NamespaceLifecycle {
  constructor(
    private readonly registry: ResourceRegistry,
    private readonly store: Store,
    private readonly objects: ObjectService,
    private readonly log: Logger,
  ) {}

  start(): () => void {
    const nsDef = this.registry.get('', 'v1', 'namespaces')!;
    this.objects.namespaceCheck = (ns) => this.check(ns);
    const unsubscribe = this.store.hub.subscribe(NS_KEY, (ev) => {
      const name = ev.obj.metadata.name!;
      if (ev.type === 'ADDED') queueMicrotask(() => this.ensureServiceAccount(name));
      else if (
        ev.type === 'MODIFIED' &&
        ev.obj.metadata.deletionTimestamp &&
        !(ev.obj.metadata.finalizers ?? []).length
      ) {
        setImmediate(() => this.finish(name));
      }
    });
    for (const name of BUILTIN_NAMESPACES) {
      if (!this.store.get(NS_KEY, '', name))
        this.objects.create(nsDef, '', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    }
    return unsubscribe;
  }

  /** Built-in namespaces cannot be deleted, as on a real cluster. */
  guardDelete(name: string): void {
    if (['default', 'kube-system', 'kube-public'].includes(name)) {
      throw forbidden(`namespaces "${name}" is forbidden: this namespace may not be deleted`);
    }
  }

  private check(namespace: string): void {
    const ns = this.store.get(NS_KEY, '', namespace);
    if (!ns) throw notFound('namespaces', '', namespace);
    if (ns.obj.metadata.deletionTimestamp) {
      throw forbidden(
        `unable to create new content in namespace ${namespace} because it is being terminated`,
      );
    }
  }

  private ensureServiceAccount(namespace: string): void {
    const ns = this.store.get(NS_KEY, '', namespace);
    if (!ns || ns.obj.metadata.deletionTimestamp || this.store.get(SA_KEY, namespace, 'default')) return;
    const sa: KObject = {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'default', namespace },
    };
    try {
      this.objects.create(this.registry.get('', 'v1', 'serviceaccounts')!, namespace, sa);
    } catch (err) {
      this.log.warn({ err, namespace }, 'could not create the default service account');
    }
  }

  private finish(namespace: string): void {
    const ns = this.store.get(NS_KEY, '', namespace);
    if (!ns || !ns.obj.metadata.deletionTimestamp || (ns.obj.metadata.finalizers ?? []).length) return;
    const keys = new Set(
      this.registry
        .all()
        .filter((d) => d.namespaced && !d.virtual)
        .map(storageKey),
    );
    let removed = 0;
    for (const key of keys) {
      for (const s of this.store.list(key, namespace)) {
        this.store.remove(key, namespace, s.obj.metadata.name!);
        removed++;
      }
    }
    this.store.remove(NS_KEY, '', namespace);
    this.log.info({ namespace, removed }, 'namespace deleted');
  }
}
