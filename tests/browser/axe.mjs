// axe-core on a page, for the browser scripts (portal.mjs, desktop.mjs): no serious or
// critical violation, then a full-page screenshot named after the check.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** An `audit(page, name)` that saves screenshots under `shots`, says what it saw with `step`
 * and ends the script with `fail`. */
export function auditor({ shots, step, fail }) {
  return async function audit(page, name) {
    await page.evaluate(AXE);
    const result = await page.evaluate(() => globalThis.axe.run(document, { resultTypes: ['violations'] }));
    const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    if (bad.length > 0) {
      const lines = bad.map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
      fail(`axe on ${name}:\n${lines.join('\n')}`);
    }
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
    step(`${name}: axe clean (${result.violations.length} minor), screenshot ${name}.png`);
  };
}
