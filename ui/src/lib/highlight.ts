// Line-by-line syntax colouring for the diff languages agents send (JSON, YAML, SQL, HCL).
// It returns tokens, never markup: the view renders each token as a text node in a span, so
// highlighting cannot turn agent text into HTML. Unknown languages come back as one token.

export type TokenClass = "plain" | "key" | "string" | "number" | "keyword" | "comment" | "punct";
export interface Token {
  text: string;
  cls: TokenClass;
}

type Rule = [RegExp, TokenClass];

const STRING: Rule = [/^"(?:[^"\\]|\\.)*"?|^'(?:[^'\\]|\\.)*'?/, "string"];
const NUMBER: Rule = [/^-?\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b/, "number"];
const PUNCT: Rule = [/^[{}[\](),:;=<>!+*/.-]/, "punct"];
const SPACE: Rule = [/^\s+/, "plain"];
const WORD: Rule = [/^[\p{L}\p{N}_$@]+/u, "plain"];

const SQL_KEYWORDS =
  /^(?:select|from|where|and|or|not|insert|into|values|update|set|delete|create|alter|drop|table|index|view|grant|revoke|on|to|join|left|right|inner|outer|group|by|order|having|limit|offset|as|null|is|in|like|between|case|when|then|else|end|distinct|union|all|primary|key|foreign|references|default|begin|commit|rollback|truncate|with|returning|cascade)\b/i;

const RULES: Record<string, Rule[]> = {
  json: [SPACE, [/^"(?:[^"\\]|\\.)*"(?=\s*:)/, "key"], STRING, NUMBER, [/^(?:true|false|null)\b/, "keyword"], PUNCT, WORD],
  yaml: [
    SPACE,
    [/^#.*/, "comment"],
    [/^[\p{L}\p{N}_.\-/"']+(?=\s*:(?:\s|$))/u, "key"],
    STRING,
    NUMBER,
    [/^(?:true|false|null|yes|no|on|off|~)\b/i, "keyword"],
    PUNCT,
    WORD,
  ],
  sql: [SPACE, [/^--.*/, "comment"], [/^\/\*.*?(?:\*\/|$)/, "comment"], STRING, NUMBER, [SQL_KEYWORDS, "keyword"], PUNCT, WORD],
  hcl: [
    SPACE,
    [/^(?:#|\/\/).*/, "comment"],
    [/^\/\*.*?(?:\*\/|$)/, "comment"],
    [/^[\p{L}_][\p{L}\p{N}_-]*(?=\s*=)/u, "key"],
    STRING,
    NUMBER,
    [/^(?:resource|data|variable|output|module|provider|locals|terraform|true|false|null|for|in|if)\b/, "keyword"],
    PUNCT,
    WORD,
  ],
};

/** Languages with colouring; others are shown plain. */
export function supported(language: string | null | undefined): boolean {
  return !!language && normalise(language) in RULES;
}

function normalise(language: string): string {
  const l = language.toLowerCase();
  if (l === "yml") return "yaml";
  if (l === "terraform" || l === "tf") return "hcl";
  return l;
}

/** Lines longer than this are shown plain: colouring them would cost more than it helps. */
export const MAX_HIGHLIGHT = 2000;

/** Splits one line into tokens; their texts concatenate to the line exactly. */
export function tokens(line: string, language: string | null | undefined): Token[] {
  const rules = language && line.length <= MAX_HIGHLIGHT ? RULES[normalise(language)] : undefined;
  if (!rules) return [{ text: line, cls: "plain" }];
  const out: Token[] = [];
  let rest = line;
  while (rest.length > 0) {
    let matched = false;
    for (const [re, cls] of rules) {
      const m = re.exec(rest);
      if (m && m[0].length > 0) {
        push(out, m[0], cls);
        rest = rest.slice(m[0].length);
        matched = true;
        break;
      }
    }
    if (!matched) {
      push(out, rest.charAt(0), "plain");
      rest = rest.slice(1);
    }
  }
  return out;
}

function push(out: Token[], text: string, cls: TokenClass) {
  const last = out[out.length - 1];
  if (last && last.cls === cls) last.text += text;
  else out.push({ text, cls });
}
