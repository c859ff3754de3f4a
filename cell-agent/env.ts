/**
 * Expands `$(VAR)` references the way the kubelet does: `$$` escapes to `$`, an undefined or
 * unterminated reference stays as written.
 */
export function expandVars(input: string, lookup: (name: string) => string | undefined): string {
  let out = '';
  let i = 0;
  while (i < input.length) {
    const c = input[i]!;
    if (c !== '$' || i + 1 >= input.length) {
      out += c;
      i++;
      continue;
    }
    const next = input[i + 1]!;
    if (next === '$') {
      out += '$';
      i += 2;
    } else if (next === '(') {
      const close = input.indexOf(')', i + 2);
      if (close < 0) {
        out += '$(';
        i += 2;
      } else {
        const name = input.slice(i + 2, close);
        out += lookup(name) ?? `$(${name})`;
        i = close + 1;
      }
    } else {
      out += `$${next}`;
      i += 2;
    }
  }
  return out;
}

/**
 * Builds a container's environment: the image's variables, then the pod spec's in order, each
 * value expanded against the spec variables defined before it (image variables are not visible to
 * `$(VAR)`, as with the kubelet). Returns the final `NAME=value` list and the spec's variables.
 */
export function buildEnv(
  imageEnv: string[],
  specEnv: { name: string; value: string }[],
): { env: string[]; specVars: Map<string, string> } {
  const specVars = new Map<string, string>();
  for (const { name, value } of specEnv)
    specVars.set(
      name,
      expandVars(value, (n) => specVars.get(n)),
    );
  const all = new Map<string, string>();
  for (const kv of imageEnv) {
    const eq = kv.indexOf('=');
    if (eq > 0) all.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  for (const [k, v] of specVars) all.set(k, v);
  return { env: [...all].map(([k, v]) => `${k}=${v}`), specVars };
}
