// The published shape of the module: package.json points at files that exist, and the TypeScript
// declarations (generated from the JSDoc with `npm run types`) declare exactly what the module exports.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";

const here = new URL("../", import.meta.url);

test("package.json exports the module and its declarations", async () => {
  const manifest = JSON.parse(await readFile(new URL("package.json", here), "utf8"));
  assert.equal(manifest.type, "module");
  assert.equal(manifest.exports["."].default, "./refresh-manager.js");
  assert.equal(manifest.exports["."].types, "./refresh-manager.d.ts");
  for (const file of manifest.files) {
    await readFile(new URL(file, here)); // throws if a published file is missing
  }
});

test("the declarations declare exactly the module's exports", async () => {
  const module = await import(new URL("refresh-manager.js", here).href);
  const declarations = await readFile(new URL("refresh-manager.d.ts", here), "utf8");
  const declared = [...declarations.matchAll(/^export (?:declare )?(?:function|class|const) (\w+)/gm)].map(
    (match) => match[1],
  );
  assert.deepEqual(declared.sort(), Object.keys(module).sort());
});

test("every option the constructor reads is declared", async () => {
  const source = await readFile(new URL("refresh-manager.js", here), "utf8");
  const declarations = await readFile(new URL("refresh-manager.d.ts", here), "utf8");
  const block = declarations.slice(declarations.indexOf("export type RefreshManagerOptions"));
  const start = source.indexOf("function resolveOptions(");
  const resolver = source.slice(start, source.indexOf("\n}\n", start));
  const read = new Set([...resolver.matchAll(/\bo\.(\w+)/g)].map((match) => match[1]));
  assert.ok(read.size > 5, `found only ${read.size} options in the source`);
  for (const name of read) {
    assert.match(block, new RegExp(`\\b${name}\\?:`), `option ${name} is not declared`);
  }
});
