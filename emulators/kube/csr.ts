/**
 * CertificateSigningRequests: the requester stamped from the authenticated user on create, the
 * request checked to be a PEM CSR, and the approval/status rules (Approved and Denied exclude each
 * other, an approval cannot be withdrawn, a certificate needs an approval).
 */
import { fieldError, type StatusCause } from './api-errors.ts';
import { deepEqual, getPath, isPlainObject, mapField, nowIso, type KObject } from './object.ts';
import type { UserInfo } from './tokens.ts';

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
  lastUpdateTime?: string;
  lastTransitionTime?: string;
}

export function stampRequester(csr: KObject, user: UserInfo): void {
  const spec = mapField(csr, 'spec');
  spec.username = user.username;
  if (user.uid) spec.uid = user.uid;
  else delete spec.uid;
  spec.groups = user.groups;
  if (user.extra) spec.extra = user.extra;
}

export function validateCsr(csr: KObject, old?: KObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const request = getPath(csr, 'spec.request');
  if (typeof request !== 'string' || request === '') causes.push(fieldError('Required', 'spec.request', ''));
  else {
    const pem = Buffer.from(request, 'base64').toString('utf8');
    if (!/-----BEGIN (NEW )?CERTIFICATE REQUEST-----/.test(pem)) {
      causes.push(
        fieldError('Invalid', 'spec.request', 'PEM block type must be CERTIFICATE REQUEST', '<bytes>'),
      );
    }
  }
  const signer = getPath(csr, 'spec.signerName');
  if (typeof signer !== 'string' || signer === '') causes.push(fieldError('Required', 'spec.signerName', ''));
  else if (!/^[a-z0-9.-]+\/[A-Za-z0-9.-]+/.test(signer))
    causes.push(
      fieldError(
        'Invalid',
        'spec.signerName',
        "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        signer,
      ),
    );
  const usages = getPath(csr, 'spec.usages');
  if (usages !== undefined && !Array.isArray(usages))
    causes.push(fieldError('Invalid', 'spec.usages', 'must be a list', usages));

  const conds = (getPath(csr, 'status.conditions') ?? []) as Condition[];
  const now = nowIso();
  const seen = new Set<string>();
  conds.forEach((c: Condition, i) => {
    if (!isPlainObject(c) || typeof c.type !== 'string' || !c.type) {
      causes.push(fieldError('Required', `status.conditions[${i}].type`, ''));
      return;
    }
    if (seen.has(c.type)) causes.push(fieldError('Duplicate', `status.conditions[${i}].type`, '', c.type));
    seen.add(c.type);
    c.status ??= 'True';
    c.lastUpdateTime ??= now;
    c.lastTransitionTime ??= now;
  });
  if (seen.has('Approved') && seen.has('Denied')) {
    causes.push(
      fieldError(
        'Invalid',
        'status.conditions',
        'Approved and Denied conditions are mutually exclusive',
        'Denied',
      ),
    );
  }
  const certificate = getPath(csr, 'status.certificate');
  const approved = conds.some((c) => c.type === 'Approved' && c.status === 'True');
  if (certificate !== undefined && certificate !== '' && !approved) {
    causes.push(
      fieldError('Forbidden', 'status.certificate', 'may only be set when the request is approved'),
    );
  }
  if (old) {
    const oldConds = (getPath(old, 'status.conditions') ?? []) as Condition[];
    for (const t of ['Approved', 'Denied']) {
      if (oldConds.some((c) => c.type === t) && !seen.has(t)) {
        causes.push(
          fieldError('Forbidden', 'status.conditions', `updates may not remove a condition of type "${t}"`),
        );
      }
    }
    const oldCert = getPath(old, 'status.certificate');
    if (oldCert && certificate !== oldCert)
      causes.push(
        fieldError('Forbidden', 'status.certificate', 'updates may not modify existing certificate content'),
      );
    if (!deepEqual(old.spec, csr.spec)) causes.push(fieldError('Forbidden', 'spec', 'field is immutable'));
  }
  return causes;
}
