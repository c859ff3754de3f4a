import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml } from 'yaml';

/** The repository root. */
export const root = fileURLToPath(new URL('../..', import.meta.url));

/** A Kubernetes object as rendered, with the template it came from. */
export interface Rendered {
  source: string;
  obj: KubeObject;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [key: string]: unknown;
}

let built: string | undefined;

/** Builds tools/chart-render through the Makefile rule users run (once per test process). */
export function renderer(): string {
  if (!built) {
    execFileSync('make', ['-s', '.tmp/bin/chart-render'], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
    built = join(root, '.tmp/bin/chart-render');
  }
  return built;
}

/** Runs chart-render; never throws, so tests can assert on failures too. */
export function runRender(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(renderer(), args, { cwd: root, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command from the repository root to its end; never rejects, so tests can assert on failures. */
export function runCommand(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const p = spawn(command, args, { cwd: root, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Splits `helm template`-style output into objects, keeping each one's `# Source:` template. */
export function parseRendered(text: string): Rendered[] {
  const out: Rendered[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) throw new Error(`rendered YAML does not parse: ${doc.errors[0]!.message}`);
    const obj = doc.toJS() as KubeObject | null;
    if (!obj) continue;
    const m = /# Source: (\S+)/.exec(doc.commentBefore ?? '');
    out.push({ source: m?.[1] ?? '?', obj });
  }
  return out;
}

export interface RenderOptions {
  /** Schema property values, as `mpdev --parameters` takes them. */
  parameters?: Record<string, unknown>;
  /** Extra values files (chart values, merged last). */
  values?: Record<string, unknown>;
  /** Render in the deployer's test mode: apptest overlay schema (envsubst'ed) and chart. */
  testMode?: boolean;
  name?: string;
  namespace?: string;
  imagePrefix?: string;
}

export const imagePrefix = 'gcr.io/kip-test-project/kip';

/** Renders the chart from schema.yaml the way the deployer would, and returns the objects. */
export function renderChart(opts: RenderOptions = {}): Rendered[] {
  const dir = mkdtempSync(join(tmpdir(), 'kip-render-'));
  try {
    const prefix = opts.imagePrefix ?? imagePrefix;
    const parameters: Record<string, unknown> = { 'cloud.project': 'kip-test-project', ...opts.parameters };
    // The test overlay supplies the project; drop ours so its default is what is rendered.
    if (opts.testMode && !opts.parameters?.['cloud.project']) delete parameters['cloud.project'];
    const args = [
      '--chart',
      'chart/kip',
      '--schema',
      'schema.yaml',
      '--name',
      opts.name ?? 'kip',
      '--namespace',
      opts.namespace ?? 'kip-system',
      '--image-prefix',
      prefix,
      '--parameters',
      JSON.stringify(parameters),
    ];
    if (opts.testMode) {
      // What deployer/Dockerfile does to the overlay: envsubst of REGISTRY and TAG only.
      const overlay = join(dir, 'test-schema.yaml');
      const text = execFileSync('envsubst', ['$REGISTRY $TAG'], {
        input: readFileSync(join(root, 'apptest/deployer/schema.yaml')),
        env: { REGISTRY: prefix, TAG: publishedVersion() },
      });
      writeFileSync(overlay, text);
      args.push('--overlay-schema', overlay, '--overlay-chart', 'apptest/deployer/kip');
    }
    if (opts.values) {
      const f = join(dir, 'values.yaml');
      writeFileSync(f, JSON.stringify(opts.values));
      args.push('--values', f);
    }
    const r = runRender(args);
    if (r.status !== 0) throw new Error(`chart-render failed: ${r.stderr.trim()}`);
    return parseRendered(r.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** schema.yaml parsed. */
export function loadSchemaFile(path = 'schema.yaml'): Record<string, unknown> {
  return parseYaml(readFileSync(join(root, path), 'utf8')) as Record<string, unknown>;
}

export function publishedVersion(): string {
  const mk = loadSchemaFile()['x-google-marketplace'] as { publishedVersion: string };
  return mk.publishedVersion;
}

export function find(objs: Rendered[], kind: string, name?: string): KubeObject | undefined {
  return objs.find((o) => o.obj.kind === kind && (name === undefined || o.obj.metadata.name === name))?.obj;
}
