/**
 * Quotes untrusted text for an error message, cut to `max` characters so that a huge or hostile
 * input (a narinfo is uploaded by clients) cannot blow up logs and responses.
 */
export function quote(text: string, max = 80): string {
  return text.length <= max ? JSON.stringify(text) : `${JSON.stringify(text.slice(0, max))}…`;
}
