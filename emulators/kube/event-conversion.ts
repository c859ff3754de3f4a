/**
 * events.k8s.io/v1 Events are a view of the core/v1 Events, as on a real cluster: one storage,
 * two shapes. These convert between them (regarding ↔ involvedObject, note ↔ message,
 * reportingController ↔ reportingComponent, deprecated* ↔ source/firstTimestamp/...).
 */
import type { KObject } from './object.ts';

const PAIRS: [events: string, core: string][] = [
  ['regarding', 'involvedObject'],
  ['related', 'related'],
  ['note', 'message'],
  ['reason', 'reason'],
  ['type', 'type'],
  ['action', 'action'],
  ['reportingController', 'reportingComponent'],
  ['reportingInstance', 'reportingInstance'],
  ['eventTime', 'eventTime'],
  ['series', 'series'],
  ['deprecatedSource', 'source'],
  ['deprecatedFirstTimestamp', 'firstTimestamp'],
  ['deprecatedLastTimestamp', 'lastTimestamp'],
  ['deprecatedCount', 'count'],
];

function convert(obj: KObject, apiVersion: string, from: 0 | 1): KObject {
  const out: KObject = { apiVersion, kind: 'Event', metadata: obj.metadata };
  for (const pair of PAIRS) {
    const v = obj[pair[from]];
    if (v !== undefined && v !== null) out[pair[1 - from]!] = v;
  }
  return out;
}

/** An events.k8s.io/v1 Event as the core/v1 Event it is stored as. */
export function eventToCore(obj: KObject): KObject {
  return convert(obj, 'v1', 0);
}

/** A stored core/v1 Event as events.k8s.io/v1 shows it. */
export function coreToEvent(obj: KObject): KObject {
  return convert(obj, 'events.k8s.io/v1', 1);
}
