// Writes doubles and ECMAScript's text for them: random bit patterns, and decimals as people write them.
const crypto = require('crypto');
const out = [];
const b = Buffer.alloc(8);
let n = 0;
while (n < 3000) {
  crypto.randomFillSync(b);
  if (n % 3 == 1) b.writeDoubleBE(Number((crypto.randomInt(1, 1e9) / 10 ** crypto.randomInt(0, 12)).toPrecision(crypto.randomInt(1, 17))));
  if (n % 3 == 2) b.writeDoubleBE(crypto.randomInt(-(2 ** 46), 2 ** 46) * 2 ** crypto.randomInt(-80, 80));
  const d = b.readDoubleBE(0);
  if (!Number.isFinite(d)) continue;
  out.push(b.toString('hex') + ' ' + String(d));
  n++;
}
process.stdout.write('# IEEE 754 double (hex) and ECMAScript Number.prototype.toString of it, written by node ' + process.version + '\n' + out.join('\n') + '\n');
