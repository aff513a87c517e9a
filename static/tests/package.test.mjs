// The published shape of the modules: package.json points at files that exist, and the TypeScript
// declarations (generated from the JSDoc with `npm run types`) declare exactly what each module exports.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";

const here = new URL("../", import.meta.url);

/** Each module, its package export and the options type its constructor reads. */
const MODULES = [
  { name: "refresh-manager", entry: ".", options: "RefreshManagerOptions" },
  { name: "refresh-socket", entry: "./socket", options: "RefreshingWebSocketOptions" },
];

test("package.json exports the modules and their declarations", async () => {
  const manifest = JSON.parse(await readFile(new URL("package.json", here), "utf8"));
  assert.equal(manifest.type, "module");
  for (const { name, entry } of MODULES) {
    assert.equal(manifest.exports[entry].default, `./${name}.js`);
    assert.equal(manifest.exports[entry].types, `./${name}.d.ts`);
    assert.ok(manifest.files.includes(`${name}.js`) && manifest.files.includes(`${name}.d.ts`), name);
  }
  assert.match(manifest.scripts.types, /tsc refresh-manager\.js .*&& tsc refresh-socket\.js /);
  for (const file of manifest.files) {
    await readFile(new URL(file, here)); // throws if a published file is missing
  }
});

for (const { name, options } of MODULES) {
  test(`${name}.d.ts declares exactly the module's exports`, async () => {
    const module = await import(new URL(`${name}.js`, here).href);
    const declarations = await readFile(new URL(`${name}.d.ts`, here), "utf8");
    const declared = [...declarations.matchAll(/^export (?:declare )?(?:function|class|const) (\w+)/gm)].map(
      (match) => match[1],
    );
    assert.deepEqual(declared.sort(), Object.keys(module).sort());
  });

  test(`every option the ${name} constructor reads is declared in ${options}`, async () => {
    const source = await readFile(new URL(`${name}.js`, here), "utf8");
    const declarations = await readFile(new URL(`${name}.d.ts`, here), "utf8");
    const start = declarations.indexOf(`export type ${options} = {`);
    assert.ok(start >= 0, `${options} is not declared`);
    const block = declarations.slice(start, declarations.indexOf("\n};\n", start));
    const begin = source.indexOf("function resolveOptions(");
    const resolver = source.slice(begin, source.indexOf("\n}\n", begin));
    const read = new Set([...resolver.matchAll(/\bo\.(\w+)/g)].map((match) => match[1]));
    assert.ok(read.size > 5, `found only ${read.size} options in the source`);
    for (const option of read) {
      assert.match(block, new RegExp(`\\b${option}\\?:`), `option ${option} is not declared`);
    }
  });
}

// The README states each module's size, minified (terser -c -m --module) and gzipped (level 9); the
// numbers are measured here, so they cannot go stale. After a change, put the measured ones in.
test("the README states each module's minified and gzipped size as it is", async () => {
  const { minify } = await import("terser");
  const { gzipSync } = await import("node:zlib");
  const readme = await readFile(new URL("README.md", here), "utf8");
  for (const { name } of MODULES) {
    const source = await readFile(new URL(`${name}.js`, here), "utf8");
    const { code } = await minify(source, { compress: true, mangle: true, module: true });
    const bytes = gzipSync(code, { level: 9 }).length.toLocaleString("en-US");
    assert.ok(new RegExp(`\`${name}\\.js\`(?: is)? ${bytes} bytes`).test(readme.replace(/\s+/g, " ")),
      `static/README.md must state ${name}.js as ${bytes} bytes minified and gzipped`);
  }
});
