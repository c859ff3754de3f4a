/**
 * The example image every pod in examples/ runs: busybox-static (a shell, httpd and the usual
 * tools) plus a page for the web example, built with umoci and pushed with skopeo.
 */
import { buildImage, pushImage, removeBuiltImages } from '../../test/support/images.ts';
import { LabStartError } from './daemon.ts';

export const EXAMPLE_REPOSITORY = 'kip-examples/busybox';
export const EXAMPLE_TAG = '1';

const INDEX_HTML = `<!doctype html>
<title>Kip</title>
<p>Hello from a Kip cell.</p>
`;

/** Builds the example image and pushes it to `registryHost`; resolves to its reference. */
export async function seedExampleImage(registryHost: string): Promise<string> {
  try {
    const layout = await buildImage({
      name: EXAMPLE_REPOSITORY,
      tag: EXAMPLE_TAG,
      cmd: ['sh'],
      env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'],
      files: { '/www/index.html': INDEX_HTML },
      labels: { 'org.opencontainers.image.title': 'Kip lab example (busybox-static)' },
    });
    return await pushImage(layout, EXAMPLE_TAG, registryHost);
  } catch (e) {
    throw new LabStartError('seed image', (e as Error).message);
  } finally {
    removeBuiltImages();
  }
}
