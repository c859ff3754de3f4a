import assert from 'node:assert/strict';
import { annotationPairs, parseAnnotations } from './annotations.ts';
import { InvalidRequestError } from './errors.ts';

describe("Kip's pod annotations", () => {
  it('map to GCE placement', () => {
    const a = parseAnnotations({
      'pod.elotl.co/instance-type': 'n2-standard-4',
      'pod.elotl.co/launch-type': 'Spot',
      'pod.elotl.co/private-ip-only': 'false',
      'pod.elotl.co/volume-size': '20Gi',
      'pod.elotl.co/security-groups': 'web, allow-ssh',
      'pod.elotl.co/instance-profile': 'runner@proj.iam.gserviceaccount.com',
      'other/annotation': 'ignored',
    });
    assert.deepEqual(a, {
      instanceType: 'n2-standard-4',
      spot: true,
      placement: {
        privateIpOnly: false,
        volumeSizeGb: 20,
        networkTags: ['web', 'allow-ssh'],
        serviceAccount: 'runner@proj.iam.gserviceaccount.com',
      },
    });
    assert.equal(parseAnnotations({ 'pod.elotl.co/volume-size': '1Gi' }).placement.volumeSizeGb, 10);
    assert.deepEqual(parseAnnotations(undefined), { spot: false, placement: { networkTags: [] } });
  });

  it('refuse bad values, naming the annotation', () => {
    const bad: Array<[string, string, RegExp]> = [
      ['pod.elotl.co/launch-type', 'cheap', /must be spot or on-demand/],
      ['pod.elotl.co/private-ip-only', 'yes', /must be true or false/],
      ['pod.elotl.co/volume-size', 'big', /is not a size/],
      ['pod.elotl.co/security-groups', 'Web_Tier', /not a GCE network tag/],
      ['pod.elotl.co/instance-profile', 'arn:aws:iam::1:role/x', /not a service account e-mail/],
      ['pod.elotl.co/instance-type', 'N2 Standard', /not a machine type name or glob/],
    ];
    for (const [k, v, re] of bad) {
      assert.throws(
        () => parseAnnotations({ [k]: v }),
        (e: unknown) =>
          e instanceof InvalidRequestError && e.field === k && re.test(e.message) && e.message.includes(k),
      );
    }
    assert.throws(() => annotationPairs(['novalue']), /must be key=value/);
  });
});
