/**
 * Compute Engine list filters: `labels.kip-cluster = "c1"`, `(status = RUNNING) (labels.a = b)`,
 * `... AND ...`, `... OR ...`, `NOT ...`, `labels.foo:*`, `!=`, `<`/`>`, `*` wildcards in string
 * values, and the older regular-expression form `name eq 'vm-.*'` / `name ne ...`.
 */

export class FilterError extends Error {}

type Node =
  | { t: 'and' | 'or'; items: Node[] }
  | { t: 'not'; item: Node }
  | { t: 'cmp'; field: string; op: string; value: string }
  | { t: 'regex'; field: string; negate: boolean; re: RegExp };

type Token = { k: 'lp' | 'rp' | 'op' | 'word' | 'str'; v: string };

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  const re = /\s*(?:(\()|(\))|(!=|>=|<=|=|:|>|<)|"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([^\s()=!:<>"']+))/y;
  let pos = 0;
  while (pos < text.length) {
    if (/^\s*$/.test(text.slice(pos))) break;
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) throw new FilterError(`unexpected character at ${pos}`);
    pos = re.lastIndex;
    if (m[1]) out.push({ k: 'lp', v: '(' });
    else if (m[2]) out.push({ k: 'rp', v: ')' });
    else if (m[3]) out.push({ k: 'op', v: m[3] });
    else if (m[4] !== undefined) out.push({ k: 'str', v: m[4].replace(/\\(.)/g, '$1') });
    else if (m[5] !== undefined) out.push({ k: 'str', v: m[5].replace(/\\(.)/g, '$1') });
    else out.push({ k: 'word', v: m[6]! });
  }
  return out;
}

class Parser {
  private i = 0;
  constructor(private readonly toks: Token[]) {}

  parse(): Node {
    const n = this.expression();
    if (this.i < this.toks.length) throw new FilterError(`unexpected '${this.toks[this.i]!.v}'`);
    return n;
  }

  private peek(): Token | undefined {
    return this.toks[this.i];
  }

  private isWord(v: string): boolean {
    const t = this.peek();
    return t?.k === 'word' && t.v === v;
  }

  private expression(): Node {
    const items = [this.sequence()];
    while (this.isWord('AND')) {
      this.i++;
      items.push(this.sequence());
    }
    return items.length === 1 ? items[0]! : { t: 'and', items };
  }

  private sequence(): Node {
    const items = [this.factor()];
    for (let t = this.peek(); t && t.k !== 'rp' && !(t.k === 'word' && t.v === 'AND'); t = this.peek()) {
      items.push(this.factor());
    }
    return items.length === 1 ? items[0]! : { t: 'and', items };
  }

  private factor(): Node {
    const items = [this.term()];
    while (this.isWord('OR')) {
      this.i++;
      items.push(this.term());
    }
    return items.length === 1 ? items[0]! : { t: 'or', items };
  }

  private term(): Node {
    if (this.isWord('NOT')) {
      this.i++;
      return { t: 'not', item: this.simple() };
    }
    return this.simple();
  }

  private simple(): Node {
    const t = this.peek();
    if (!t) throw new FilterError('unexpected end of filter');
    if (t.k === 'lp') {
      this.i++;
      const n = this.expression();
      if (this.peek()?.k !== 'rp') throw new FilterError("missing ')'");
      this.i++;
      return n;
    }
    if (t.k !== 'word') throw new FilterError(`expected a field name, found '${t.v}'`);
    this.i++;
    const op = this.peek();
    if (op?.k !== 'op') throw new FilterError(`expected an operator after '${t.v}'`);
    this.i++;
    const value = this.peek();
    if (!value || (value.k !== 'word' && value.k !== 'str'))
      throw new FilterError(`expected a value after '${op.v}'`);
    this.i++;
    return { t: 'cmp', field: t.v, op: op.v, value: value.v };
  }
}

/** The `field eq regex` form, which GCE matches against the whole value. */
function parseRegexForm(text: string): Node | undefined {
  const re = /\s*([A-Za-z_][\w.-]*)\s+(eq|ne)\s+(?:'([^']*)'|"([^"]*)"|(\S+))/y;
  const items: Node[] = [];
  let pos = 0;
  while (pos < text.length && !/^\s*$/.test(text.slice(pos))) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) return items.length ? undefined : undefined;
    pos = re.lastIndex;
    let rx: RegExp;
    try {
      rx = new RegExp(`^(?:${m[3] ?? m[4] ?? m[5]})$`);
    } catch {
      throw new FilterError(`bad regular expression '${m[3] ?? m[4] ?? m[5]}'`);
    }
    items.push({ t: 'regex', field: m[1]!, negate: m[2] === 'ne', re: rx });
  }
  if (!items.length) return undefined;
  return items.length === 1 ? items[0]! : { t: 'and', items };
}

function values(obj: unknown, path: string[]): unknown[] {
  if (path.length === 0) return Array.isArray(obj) ? obj : [obj];
  if (Array.isArray(obj)) return obj.flatMap((o) => values(o, path));
  if (obj === null || typeof obj !== 'object') return [];
  const [head, ...rest] = path;
  const next = (obj as Record<string, unknown>)[head!];
  return next === undefined || next === null ? [] : values(next, rest);
}

function glob(pattern: string): RegExp {
  return new RegExp(
    `^${pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
}

function compare(actual: unknown, op: string, expected: string): boolean {
  const a = typeof actual === 'object' ? JSON.stringify(actual) : String(actual);
  const an = Number(a);
  const en = Number(expected);
  const numeric = a.trim() !== '' && expected.trim() !== '' && !Number.isNaN(an) && !Number.isNaN(en);
  switch (op) {
    case '=':
      return expected.includes('*') ? glob(expected).test(a) : numeric ? an === en : a === expected;
    case '!=':
      return !compare(actual, '=', expected);
    case ':':
      return (
        expected === '*' ||
        (typeof actual === 'string' ? a.includes(expected) : compare(actual, '=', expected))
      );
    case '<':
      return numeric ? an < en : a < expected;
    case '>':
      return numeric ? an > en : a > expected;
    case '<=':
      return numeric ? an <= en : a <= expected;
    case '>=':
      return numeric ? an >= en : a >= expected;
    default:
      return false;
  }
}

function evaluate(n: Node, obj: unknown): boolean {
  switch (n.t) {
    case 'and':
      return n.items.every((i) => evaluate(i, obj));
    case 'or':
      return n.items.some((i) => evaluate(i, obj));
    case 'not':
      return !evaluate(n.item, obj);
    case 'regex': {
      const vs = values(obj, n.field.split('.'));
      const hit = vs.some((v) => n.re.test(String(v)));
      return n.negate ? !hit : hit;
    }
    case 'cmp': {
      const vs = values(obj, n.field.split('.'));
      if (n.op === '!=') return vs.length === 0 || vs.every((v) => compare(v, '!=', n.value));
      return vs.some((v) => compare(v, n.op, n.value));
    }
  }
}

/** Compiles a filter into a predicate; an empty filter matches everything. Throws FilterError. */
export function compileFilter(text: string | undefined): (resource: unknown) => boolean {
  if (!text || !text.trim()) return () => true;
  const regexForm = parseRegexForm(text);
  const node = regexForm ?? new Parser(tokenize(text)).parse();
  return (r) => evaluate(node, r);
}
