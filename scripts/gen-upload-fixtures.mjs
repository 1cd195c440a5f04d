#!/usr/bin/env node
// Writes shared/tests/fixtures/uploader-replay.json: uploads shaped as the Android
// uploader sends them, each with the batch_json the old server stores for it,
// computed by the old server's own code (its src/upload.js: validateUpload, then
// derive). Read shared/tests/fixtures/uploader-replay.md before changing it.
//
//   node scripts/gen-upload-fixtures.mjs <node-fastify peer folder>
//
// e.g. cp -r ../shared/peers/node-fastify /tmp/peer &&
//      node scripts/gen-upload-fixtures.mjs /tmp/peer
// (only the peer's src/upload.js is imported: no npm install needed).
import { writeFileSync } from 'node:fs';
import { resolve, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const peer = process.argv[2];
if (!peer) {
  console.error('usage: node scripts/gen-upload-fixtures.mjs <node-fastify peer folder>');
  process.exit(2);
}
const { validateUpload, derive, summarize } = await import(pathToFileURL(resolve(peer, 'src/upload.js')));
const OUT = resolve(dirname(fileURLToPath(import.meta.url)), '../shared/tests/fixtures/uploader-replay.json');

// ------------------------------------------------ the uploader's bodies
/** xorshift32: the same bodies on every run. */
function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

/** A sensor value as Android reports it: a float32, widened to a double. */
const f32 = (x) => Math.fround(x);

const ORIENTATIONS = ['face_up', 'face_down', 'upright_portrait', 'upright_landscape', 'upright_unknown', 'unknown'];
const MOTION = ['unknown', 'stationary', 'light', 'active'];
const POCKET = ['unknown', 'likely', 'unlikely'];
const LOCATION_QUALITY = ['none', 'stale', 'high', 'medium', 'low', 'poor'];

/**
 * One upload as the uploader builds it: epoch-ms `timestamp` and `t`, a quality
 * object per reading, the location averaged over its fixes, no `magnet`.
 * `light(i)` / `pressure(i)`: whether reading i has one.
 */
function uploaderBody(seed, n, { light = () => true, pressure = () => true, geohash = 'u09tvw7', quality = true } = {}) {
  const r = rng(seed);
  const end = 1795687200000 + seed * 300000;
  const batch = [];
  for (let i = 0; i < n; i++) {
    const reading = { t: end - (n - 1 - i) * 3000 - Math.floor(r() * 40) };
    if (light(i)) reading.light = f32(r() < 0.1 ? 0 : r() * 2000);
    reading.accel = [f32(r() * 0.6 - 0.3), f32(9.80665 + r() * 0.2 - 0.1), f32(r() * 0.4 - 0.2)];
    reading.gyro = [f32(r() * 0.02 - 0.01), f32(r() * 0.02 - 0.01), f32(r() * 0.02 - 0.01)];
    if (pressure(i)) reading.pressure = f32(1013.25 + r() * 4 - 2);
    if (quality) {
      reading.quality = {
        orientation: ORIENTATIONS[Math.floor(r() * ORIENTATIONS.length)],
        tilt_deg: f32(r() * 90),
        motion_state: MOTION[Math.floor(r() * MOTION.length)],
        motion_confidence: Math.round(r() * 100) / 100,
        pocket: POCKET[Math.floor(r() * POCKET.length)],
        location_quality: LOCATION_QUALITY[Math.floor(r() * LOCATION_QUALITY.length)],
      };
    }
    batch.push(reading);
  }
  // The averaged fixes of the upload window.
  const fixes = Array.from({ length: 7 }, () => ({
    lat: 48.8566 + r() * 0.001, lon: 2.3522 + r() * 0.001, altitude: 35 + r() * 5,
    accuracy_m: 5 + r() * 20, speed_mps: r() * 1.5, bearing_deg: r() * 360,
  }));
  const mean = (k) => fixes.reduce((s, f) => s + f[k], 0) / fixes.length;
  return {
    device_id: `android-${(seed * 2654435761 >>> 0).toString(16)}`,
    timestamp: end + 1500,
    batch,
    location: {
      lat: mean('lat'), lon: mean('lon'), altitude: mean('altitude'), accuracy_m: mean('accuracy_m'),
      speed_mps: mean('speed_mps'), bearing_deg: mean('bearing_deg'),
    },
    geohash,
    battery_level: 20 + (seed * 7) % 80,
    is_charging: seed % 2 === 0,
  };
}

const CASES = [
  ['a full batch of 100 readings', uploaderBody(1, 100)],
  ['a small batch', uploaderBody(2, 3)],
  ['the light sensor not reporting yet for the first readings', uploaderBody(3, 40, { light: (i) => i >= 12 })],
  ['no reading with light', uploaderBody(4, 10, { light: () => false })],
  ['pressure on some readings only', uploaderBody(5, 20, { pressure: (i) => i % 3 === 0 })],
  ['no reading with pressure', uploaderBody(6, 20, { pressure: () => false })],
  ['an empty geohash', uploaderBody(7, 10, { geohash: '' })],
  ['readings without quality objects', uploaderBody(8, 10, { quality: false })],
  ['numbers JavaScript spells its own way', (() => {
    const body = uploaderBody(9, 4);
    body.batch[0].light = 1e16;
    body.batch[1].light = 123456789012345680000;
    body.batch[2].light = 0.000001;
    body.batch[3].light = 2 ** 53;
    body.batch[0].gyro = [-0, 1e-7, 0.1 + 0.2];
    body.batch[1].pressure = 5e-324;
    body.location.altitude = -12.5;
    return body;
  })()],
];

// ------------------------------------------- the old server's payloads
/** The old server's stored batch_json text for `body`, or its 422 details. */
function peerPayload(body) {
  const checked = validateUpload(structuredClone(body));
  return checked.details ? { details: checked.details } : { stored: derive(checked.value, 'any').payloadJson };
}

/**
 * What the contract (docs/api.md "POST /upload") stores, from the same code: the
 * readings as validateUpload normalises them (a light is filled in where it is
 * missing only to pass validation, and removed again), the payload from derive,
 * then the three differences docs/api.md names, each computed with the peer's own
 * summarize over the readings concerned.
 */
function contractPayload(body) {
  const missing = body.batch.map((r) => r.light === undefined || r.light === null);
  const filled = structuredClone(body);
  filled.batch.forEach((r, i) => { if (missing[i]) r.light = 0; });
  const checked = validateUpload(filled);
  if (checked.details) throw new Error(`invalid fixture: ${JSON.stringify(checked.details)}`);
  const upload = checked.value;
  upload.batch.forEach((r, i) => { if (missing[i]) delete r.light; });
  const payload = JSON.parse(derive(upload, 'any').payloadJson);
  // 1. light over the readings that have one; null when none has.
  const lit = upload.batch.filter((r) => r.light !== undefined);
  payload.summary.light = lit.length ? summarize(lit).light : null;
  // 2. pressure {avg, min, max} over the readings that have one, when any has
  //    (summarize's light figures, computed over the pressures).
  const pressed = upload.batch.filter((r) => r.pressure !== undefined);
  if (pressed.length) payload.summary.pressure = summarize(pressed.map((r) => ({ t: r.t, light: r.pressure }))).light;
  // 3. an empty geohash is not stored.
  if (payload.geohash === '') delete payload.geohash;
  return JSON.stringify(payload);
}

const cases = CASES.map(([name, body]) => {
  const peerSide = peerPayload(body);
  const expected = contractPayload(body);
  return {
    name,
    body: JSON.stringify(body),
    expected_batch_json: expected,
    peer: peerSide.stored === undefined
      ? { status: 422, details: peerSide.details }
      : { status: 202, batch_json_is_expected: peerSide.stored === expected, batch_json: peerSide.stored },
  };
});
writeFileSync(OUT, `${JSON.stringify({
  generated_by: 'node scripts/gen-upload-fixtures.mjs <node-fastify peer>: see uploader-replay.md',
  cases,
}, null, 1)}\n`);
for (const c of cases) console.log(`${c.peer.status} ${c.peer.batch_json_is_expected ? 'same as the peer' : 'differs from the peer'}: ${c.name}`);
console.log(`wrote ${OUT}`);
