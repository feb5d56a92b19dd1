/* The twin of emocurate/run/decide.py's steps after the emotion is known (drop_by_emotion's confidence check,
 * drop_uncaptioned, drop_low_clip_scores with clip_filter.bottom_fraction_mask), run on the stored scores in data.js.
 * Same order, same comparisons, same numbers (float64 read bit for bit): for any classify.min_confidence and
 * clip_filter.drop_fraction it gives every record the outcome `emocurate refilter` would. Tests check the two agree.
 * It changes no other decision key (emotions, dedup, apply_min_confidence_to_labelled): those records keep their outcome.
 */
"use strict";

const WHATIF = { KEPT: 0, CLASSIFY: 1, CAPTION: 2, CLIP_FILTER: 3 };

/* r: {n, gate, labelled, captioned, conf (Float64Array, NaN = none), score (Float64Array), emotion, outcome,
 *     byScore (record indices by (score, id, input order)), nEmotions, applyToLabelled}
 * -> {outcome: Int8Array (index into data.js's outcomes), pending: Uint8Array (1 = waits for a caption or a score)} */
function whatIf(r, minConfidence, dropFraction) {
  const outcome = new Int8Array(r.n), pending = new Uint8Array(r.n), pool = new Uint8Array(r.n);
  for (let i = 0; i < r.n; i++) {
    if (r.gate[i]) { outcome[i] = r.outcome[i]; continue; }  // left before the confidence check
    // classify: `applies & (nan_to_num(confidence, nan=-1.0) < threshold)`
    const applies = !r.labelled[i] || r.applyToLabelled;
    const conf = Number.isNaN(r.conf[i]) ? -1.0 : r.conf[i];
    if (applies && conf < minConfidence) { outcome[i] = WHATIF.CLASSIFY; continue; }
    // caption: none stored for (id, emotion) -> caption_error / not_captioned_yet
    if (!r.captioned[i]) { outcome[i] = WHATIF.CAPTION; pending[i] = 1; continue; }
    // clip filter: a caption without a stored score -> not_clip_scored_yet
    if (Number.isNaN(r.score[i])) { outcome[i] = WHATIF.CLIP_FILTER; pending[i] = 1; continue; }
    outcome[i] = WHATIF.KEPT;
    pool[i] = 1;
  }
  // bottom_fraction_mask: per emotion, the floor(fraction * n + 1e-9) lowest (score, id) of the scored records
  const members = new Int32Array(r.nEmotions);
  for (const i of r.byScore) if (pool[i]) members[r.emotion[i]]++;
  const left = Array.from(members, (m) => Math.floor(dropFraction * m + 1e-9));
  for (const i of r.byScore) {
    if (pool[i] && left[r.emotion[i]] > 0) { outcome[i] = WHATIF.CLIP_FILTER; left[r.emotion[i]]--; }
  }
  return { outcome, pending };
}
