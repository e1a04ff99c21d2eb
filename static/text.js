// What a reply bubble shows of the raw LLM text (`text.delta`).
//
// `[name:value]` tags such as [emotion:happy] are control marks, never spoken: the server reports
// each one as an `emotion` event, and the page shows them as badges, not as text. Stage
// directions like （微笑） or [laughs] stay: they are roleplay text. The tag grammar follows the
// server's Stripper (agent/stripper.py): a name of up to 32 word characters starting with an
// ASCII letter or `_`, then `:` or `=`, then a value without brackets.

const NAME = String.raw`[A-Za-z_][\p{L}\p{N}_-]{0,31}`;
const TAG = new RegExp(String.raw`\[\s*${NAME}\s*[:=]\s*[^\[\]]{1,64}?\s*\]`, "gu");
// The end of a stream that may still grow into a tag: held back until it closes or cannot be one.
// 200: the server gives up on a bracket left open for 200 characters.
const TAG_START = new RegExp(String.raw`\[\s*(?:${NAME}\s*(?:[:=][^\[\]]{0,200})?)?$`, "u");

/**
 * The text to show for `raw` with every tag removed.
 *
 * While the reply streams (`final` false), a trailing piece that may still become a tag is held
 * back, so that the shown text only ever grows however the tags are split across deltas.
 */
export function visibleText(raw, final = false) {
  const text = raw.replace(TAG, "");
  if (final) return text;
  const m = TAG_START.exec(text);
  return m ? text.slice(0, m.index) : text;
}

/** The badge for a tag event: the value alone for emotions, else `name: value`. */
export function tagLabel(name, value) {
  return ["emotion", "emo", "mood"].includes(name) ? value : `${name}: ${value}`;
}
