/* Fused softmax and per-row attention statistics over one block of scores, in place (float32, CPU).
 *
 * Each row of head bh at absolute query position q = q0 + r holds K key logits s; visible keys [lo, hi):
 * lo = max(0, q − window + 1) if window > 0, hi = min(K, q + 1) if causal (else K). In at most three passes:
 *   m = max s and argmax = the first k with s[k] = m;
 *   e = exp(s − m), Σ e and Σ e·min(q − k, W), so rowmax = P[argmax] = 1 / Σ e and distance = Σ_k P[k]·min(q − k, W);
 *   colsum[k] += w[b, r]·P[k] (P = e / Σ e, 0 outside [lo, hi)), and the row becomes P only if `normalized`:
 *   otherwise it keeps e, and the caller scales e·V by rowmax (flash attention's deferred normalization);
 *   key-set masses Σ_{k∈S} P[k] come from the few keys of each set.
 * This replaces softmax, argmax, a gather, a vector·matrix column sum and two extra P·V columns (5 passes over
 * the block in memory) with one pass per row while it sits in L1. A row whose logits are all −inf (padding)
 * becomes zeros, as softmax(...).nan_to_num(0) does. exp is Cephes' expf (see exp_v).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define W 16 /* floats per vector (GCC/Clang vector extensions: AVX-512, 2×AVX2, 4×NEON) */
#define U 4  /* vectors per step: independent accumulators hide add/max latency */
typedef float vf __attribute__((vector_size(W * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(W * sizeof(int32_t))));
typedef uint32_t vu __attribute__((vector_size(W * sizeof(uint32_t)))); /* bit arithmetic that wraps */

static inline vf load(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void store(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf splat(float x) { return (vf){0} + x; }
static inline vf select(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }
static inline vf vmax(vf a, vf b) { return select(a > b, a, b); }

/* Cephes expf on a vector, for x <= 0 (scores minus their row max): 2^n·p(r), n = round(x·log2 e) by the
 * 1.5·2^23 shift (round to nearest even; the compiler may not reassociate it away: no -ffast-math), r = x − n·ln 2
 * (two-part constant), degree-6 polynomial; ~1 ulp; exp(0) = 1 exactly; below −87.3 (and −inf): 0. */
static inline vf exp_v(vf x) {
    const float shift = 12582912.0f; /* 1.5·2^23: adding it rounds to an integer held in the low mantissa bits */
    vi under = x < -87.3365447505f;
    vf t = x * 1.44269504088896341f + shift;
    vf n = t - shift;
    vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
    vf z = r * r;
    vf y = splat(1.9875691500e-4f);
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    const uint32_t shift_bits = 0x4B400000u; /* the bits of 1.5·2^23 */
    vf scale = (vf)(((vu)t - shift_bits + 127u) << 23); /* 2^n; garbage below −87.3 (masked), unsigned: no UB */
    return select(under, splat(0.0f), y * scale);
}

static inline vf load_part(const float *p, int64_t n, float fill) { /* n < W values, the rest `fill` */
    vf v = splat(fill);
    memcpy(&v, p, (size_t)n * sizeof(float));
    return v;
}
static inline void store_part(float *p, vf v, int64_t n) { memcpy(p, &v, (size_t)n * sizeof(float)); }
static inline float hsum(vf v) { float t[W], s = 0.0f; store(t, v); for (int j = 0; j < W; j++) s += t[j]; return s; }

/* m = max s[lo:hi] and the first k with s[k] = m: each lane keeps its first maximum (strict >), then the
 * smallest index among lanes holding the overall maximum; a partial last vector is padded with −inf. */
static float row_max(const float *s, int64_t lo, int64_t hi, int64_t *argmax) {
    vf m0 = splat(-INFINITY), m1 = m0;
    vi i0 = {0}, i1 = {0}, kv = {0}; /* positions relative to lo (int32: rows below 2^31 keys) */
    for (int j = 0; j < W; j++) kv[j] = j;
    int64_t k = lo;
    for (; k + 2 * W <= hi; k += 2 * W, kv += 2 * W) {
        vf v0 = load(s + k), v1 = load(s + k + W);
        vi g0 = v0 > m0, g1 = v1 > m1;
        m0 = select(g0, v0, m0), m1 = select(g1, v1, m1);
        i0 = (g0 & kv) | (~g0 & i0), i1 = (g1 & (kv + W)) | (~g1 & i1);
    }
    for (; k < hi; k += W, kv += W) {
        vf v0 = k + W <= hi ? load(s + k) : load_part(s + k, hi - k, -INFINITY);
        vi g0 = v0 > m0;
        m0 = select(g0, v0, m0), i0 = (g0 & kv) | (~g0 & i0);
    }
    float m = -INFINITY;
    int64_t best = lo;
    for (int j = 0; j < W; j++) {
        int64_t c0 = lo + i0[j], c1 = lo + i1[j];
        if (m0[j] > m || (m0[j] == m && c0 < best)) m = m0[j], best = c0;
        if (m1[j] > m || (m1[j] == m && c1 < best)) m = m1[j], best = c1;
    }
    *argmax = best;
    return m;
}

static inline vf capped(vf d, vf cap) { return select(d < cap, d, cap); }

/* s = e = exp(s − m) on [lo, hi); returns Σ e and sets *dist = Σ_k e[k]·min(q − k, cap) (distances are exact
 * integers in float below 2^24 positions; padding of a partial vector is −inf, whose exp is 0). */
static float exp_in_place(float *s, int64_t lo, int64_t hi, float m, int64_t q, float cap, float *dist) {
    const vf mv = splat(m), cv = splat(cap);
    vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, d = {0};
    for (int j = 0; j < W; j++) d[j] = (float)(q - lo - j); /* q − k for the vector's keys */
    int64_t k = lo;
    for (; k + U * W <= hi; k += U * W, d -= (float)(U * W)) {
        vf e0 = exp_v(load(s + k) - mv), e1 = exp_v(load(s + k + W) - mv);
        vf e2 = exp_v(load(s + k + 2 * W) - mv), e3 = exp_v(load(s + k + 3 * W) - mv);
        store(s + k, e0), store(s + k + W, e1), store(s + k + 2 * W, e2), store(s + k + 3 * W, e3);
        a0 += e0, a1 += e1, a2 += e2, a3 += e3;
        b0 += e0 * capped(d, cv) + e1 * capped(d - (float)W, cv);
        b1 += e2 * capped(d - (float)(2 * W), cv) + e3 * capped(d - (float)(3 * W), cv);
    }
    for (; k < hi; k += W, d -= (float)W) {
        const int64_t n = hi - k < W ? hi - k : W;
        vf e0 = exp_v((n == W ? load(s + k) : load_part(s + k, n, -INFINITY)) - mv);
        store_part(s + k, e0, n);
        a0 += e0, b0 += e0 * capped(d, cv);
    }
    *dist = hsum(b0 + b1);
    return hsum((a0 + a1) + (a2 + a3));
}

/* The last pass over e on [lo, hi): colsum += (w·inv)·e when colsum; s = inv·e when `write` (else s keeps e). */
static void finish(float *s, int64_t lo, int64_t hi, float inv, float *colsum, float w, int write) {
    const vf iv = splat(inv), wv = splat(w * inv);
    int64_t k = lo;
    for (; k < hi; k += W) {
        const int64_t n = hi - k < W ? hi - k : W;
        vf e0 = n == W ? load(s + k) : load_part(s + k, n, 0.0f);
        if (colsum != NULL) store_part(colsum + k, (n == W ? load(colsum + k) : load_part(colsum + k, n, 0.0f))
                                                   + wv * e0, n);
        if (write) store_part(s + k, e0 * iv, n);
    }
}

static void set_masses(const float *s, int64_t K, const int64_t *set_keys, const int64_t *set_offsets,
                       int64_t n_sets, float *key_mass) { /* Σ_{k∈S} P[k] for each set (keys ≥ K: not yet seen) */
    for (int64_t j = 0; j < n_sets; j++) {
        float mass = 0.0f;
        for (int64_t i = set_offsets[j]; i < set_offsets[j + 1]; i++)
            if (set_keys[i] >= 0 && set_keys[i] < K) mass += s[set_keys[i]];
        key_mass[j] = mass;
    }
}

static void row(float *s, int64_t K, int64_t q, int64_t lo, int64_t hi, int64_t dist_window,
                const int64_t *set_keys, const int64_t *set_offsets, int64_t n_sets, float w, float *colsum,
                int normalized, float *rowmax, int64_t *argmax, float *distance, float *key_mass) {
    const float m = row_max(s, lo, hi, argmax);
    memset(s, 0, (size_t)lo * sizeof(float));
    if (hi < K) memset(s + hi, 0, (size_t)(K - hi) * sizeof(float));
    if (!(m > -INFINITY)) { /* no visible key: no attention */
        if (hi > lo) memset(s + lo, 0, (size_t)(hi - lo) * sizeof(float));
        *rowmax = 0.0f;
        *argmax = 0;
        *distance = 0.0f;
        for (int64_t j = 0; j < n_sets; j++) key_mass[j] = 0.0f;
        return;
    }
    float dist;
    const float inv = 1.0f / exp_in_place(s, lo, hi, m, q, dist_window >= 0 ? (float)dist_window : INFINITY, &dist);
    *rowmax = inv;
    *distance = dist * inv;
    set_masses(s, K, set_keys, set_offsets, n_sets, key_mass);
    for (int64_t j = 0; j < n_sets; j++) key_mass[j] *= inv;
    if ((colsum != NULL && w != 0.0f) || normalized)
        finish(s, lo, hi, inv, w != 0.0f ? colsum : NULL, w, normalized);
}

typedef struct { /* where one block's results go: element (bh, r) at bh·stride + r; key set j a further j·set_stride */
    float *rowmax, *distance, *key_mass;
    int64_t *argmax;
    int64_t stride, set_stride;
} outputs;

static void rows(float *scores, int64_t first, int64_t last, int64_t heads, int64_t C, int64_t K, int64_t q0,
                 int causal, int64_t window, int64_t dist_window, const int64_t *set_keys,
                 const int64_t *set_offsets, int64_t n_sets, const float *weights, float *colsum_row,
                 int normalized, const outputs *out) {
    float mass[64];
    for (int64_t i = first; i < last; i++) { /* i = bh·C + r, all of one head bh */
        const int64_t bh = i / C, r = i % C, q = q0 + r, o = bh * out->stride + r;
        int64_t hi = causal ? (q + 1 < K ? q + 1 : K) : K;
        int64_t lo = window > 0 && q - window + 1 > 0 ? q - window + 1 : 0;
        if (lo > hi) lo = hi;
        const float w = weights != NULL ? weights[(bh / heads) * C + r] : 1.0f;
        for (int64_t j0 = 0; j0 < n_sets || j0 == 0; j0 += 64) { /* key sets in groups of 64 */
            const int64_t n = n_sets - j0 < 64 ? n_sets - j0 : 64;
            if (j0 == 0)
                row(scores + i * K, K, q, lo, hi, dist_window, set_keys, set_offsets + j0, n, w, colsum_row,
                    normalized, out->rowmax + o, out->argmax + o, out->distance + o, mass);
            else { /* the row holds P when normalized, else e = P / rowmax */
                set_masses(scores + i * K, K, set_keys, set_offsets + j0, n, mass);
                for (int64_t j = 0; j < n; j++) mass[j] *= normalized ? 1.0f : out->rowmax[o];
            }
            for (int64_t j = 0; j < n; j++) out->key_mass[(j0 + j) * out->set_stride + o] = mass[j];
        }
    }
}

/* scores [BH, C, K] (BH = B·heads); rows at positions q0 … q0 + C − 1; key sets: keys
 * set_keys[set_offsets[j] : set_offsets[j + 1]] for j < n_sets (no repeats); weights [B, C] or NULL (all 1);
 * colsum: BH rows of `colsum_stride` floats, or NULL. Outputs (row max, its key, distance; key-set masses) go to
 * rowmax[bh·out_stride + r] etc. and key_mass[j·BH·out_stride + bh·out_stride + r], so a caller can hand in
 * slices of per-layer arrays [BH, T] (and [n_sets, BH, T]). The block ends as P if `normalized`, else as e. distance = Σ_k P[k]·min(q − k, dist_window)
 * (unclipped when dist_window < 0). Threads (OpenMP; loaded into torch's runtime) take equal runs of rows; a head
 * split between two threads sums its column sums privately, then adds them under a lock. `scratch`:
 * 2·threads·K floats, or NULL if colsum is. */
void softmax_stats(float *scores, int64_t BH, int64_t heads, int64_t C, int64_t K, int64_t q0, int causal,
                   int64_t window, int64_t dist_window, const int64_t *set_keys, const int64_t *set_offsets,
                   int64_t n_sets, const float *weights, float *colsum, int64_t colsum_stride, float *rowmax,
                   int64_t *argmax, float *distance, float *key_mass, int64_t out_stride, int normalized,
                   float *scratch, int threads) {
    const int64_t total = BH * C;
    const outputs out = {rowmax, distance, key_mass, argmax, out_stride, BH * out_stride};
#pragma omp parallel num_threads(threads) if (threads > 1 && total * K > (1 << 16))
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
#else
        const int t = 0, n = 1;
#endif
        const int64_t begin = total * t / n, end = total * (t + 1) / n;
        for (int64_t i = begin; i < end;) {
            const int64_t bh = i / C, stop = (bh + 1) * C < end ? (bh + 1) * C : end;
            const int shared = colsum != NULL && (i > bh * C || stop < (bh + 1) * C); /* head split with another */
            float *own = colsum == NULL ? NULL : shared ? scratch + (int64_t)(2 * t + (i > bh * C)) * K
                                                        : colsum + bh * colsum_stride;
            if (shared) memset(own, 0, (size_t)K * sizeof(float));
            rows(scores, i, stop, heads, C, K, q0, causal, window, dist_window, set_keys, set_offsets, n_sets,
                 weights, own, normalized, &out);
            if (shared) {
#pragma omp critical(workbench_colsum)
                for (int64_t k = 0; k < K; k++) colsum[bh * colsum_stride + k] += own[k];
            }
            i = stop;
        }
    }
}
