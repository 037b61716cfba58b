/** docs/frontend.md shows only code the tests run: every TypeScript block in the guide is a
 * `#region` of clients/examples/, and every region is shown in the guide with the test that
 * covers it. */
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { CLIENTS_DIR, REPO_DIR } from "./support.js";

const GUIDE = path.join(REPO_DIR, "docs", "frontend.md");
const EXAMPLES = path.join(CLIENTS_DIR, "examples");

function regions(): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of readdirSync(EXAMPLES).filter((f) => /\.tsx?$/.test(f))) {
    const source = readFileSync(path.join(EXAMPLES, file), "utf8");
    for (const match of source.matchAll(/^\/\/ #region (\S+)\n([\s\S]*?)^\/\/ #endregion \1$/gm)) {
      found.set(`${file}#${match[1]}`, match[2]!.trim());
    }
  }
  return found;
}

function guideBlocks(): Array<{ code: string; before: string }> {
  const guide = readFileSync(GUIDE, "utf8");
  return [...guide.matchAll(/```(?:ts|tsx|typescript)\n([\s\S]*?)```/g)].map((m) => ({
    code: m[1]!.trim(),
    before: guide.slice(Math.max(0, m.index! - 600), m.index!),
  }));
}

test("every TypeScript block of docs/frontend.md is an example region, naming its test", () => {
  const known = regions();
  const blocks = guideBlocks();
  assert.ok(blocks.length >= 8, `only ${blocks.length} blocks`);
  for (const { code, before } of blocks) {
    const name = [...known].find(([, region]) => region === code)?.[0];
    assert.ok(name, `this block is not (verbatim) a region of clients/examples/:\n${code.slice(0, 300)}`);
    const cited = [...before.matchAll(/clients\/test\/([\w.-]+\.test\.tsx?)/g)].map((m) => m[1]!);
    assert.ok(cited.length > 0, `the block ${name} does not say which test covers it`);
    for (const file of cited) assert.ok(existsSync(path.join(CLIENTS_DIR, "test", file)), `no test ${file}`);
  }
});

test("every example region is shown in the guide", () => {
  const shown = new Set(guideBlocks().map((b) => b.code));
  for (const [name, region] of regions()) assert.ok(shown.has(region), `${name} is not in docs/frontend.md`);
});
