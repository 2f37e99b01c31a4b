// Hostile text for labels, annotations and runbooks. Each payload, if the page ever runs it,
// sets `window.__xss` to its own name (the sentinel the checks read) or opens a dialog (the
// checks record every dialog). A page that shows them as text passes.

export const SENTINEL = '__xss';

export const PAYLOADS = {
  script: `<script>window.${SENTINEL}='script'</script>`,
  img: `<img src=x onerror="window.${SENTINEL}='img'">`,
  svg: `<svg onload="window.${SENTINEL}='svg'"></svg>`,
  attribute: `"><script>window.${SENTINEL}='attribute'</script><b x="`,
  single: `' onmouseover='window.${SENTINEL}="single"' autofocus onfocus='window.${SENTINEL}="single"`,
  iframe: `<iframe srcdoc="<script>parent.${SENTINEL}='iframe'</script>"></iframe>`,
  // void: a javascript: URL whose value is a string would replace the document, sentinel and all.
  href: `javascript:void(window.${SENTINEL}='href')`,
  dialog: `<script>alert('xss')</script>`,
};

/** An alert name that is itself a script (what a console page shows first). */
export const HOSTILE_ALERTNAME = `<script>window.${SENTINEL}='alertname'</script>`;

/** Labels carrying every payload, for an alert named `alertname`. */
export function hostileLabels(alertname) {
  const labels = { alertname, severity: 'critical', service: PAYLOADS.script };
  for (const [name, payload] of Object.entries(PAYLOADS)) labels[`xss_${name}`] = payload;
  return labels;
}

/** Annotations carrying the payloads where a page is most likely to show them. */
export function hostileAnnotations() {
  return {
    summary: `Summary ${PAYLOADS.script} ${PAYLOADS.img}`,
    description: `Description ${PAYLOADS.svg} ${PAYLOADS.dialog}`,
    runbook_url: PAYLOADS.href,
  };
}

/** A runbook in Markdown with every payload as raw HTML, inline and as blocks. */
export function hostileRunbook(name) {
  const blocks = Object.values(PAYLOADS).join('\n\n');
  const inline = Object.values(PAYLOADS).map((p) => `Inline ${p} here.`).join('\n\n');
  return `# ${name}\n\nA runbook whose text carries raw HTML: it must show as text.\n\n${blocks}\n\n${inline}\n\n` +
    `[a link](${PAYLOADS.href})\n`;
}
