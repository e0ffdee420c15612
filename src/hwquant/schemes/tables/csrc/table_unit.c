/* A fused, multiply-free table unit (Covell et al. 2019; methods.md §3.1, §7.3 item 4).

   One call runs a convolution or linear table unit on a batch of index tensors:

     window addressing -> gather-add of precomputed grouped rows -> threshold count -> index

   The grouped rows are those of hwquant.tables.kernels.LookupPlan: rows[q][addr][0..O) with
   addr = d_0 + d_1 B + ... + d_{g-1} B^{g-1}; a row holds, for every output channel o, the sum
   of the g table entries T[d_j, w[o, q g + j]]. So acc[p][o] = the sum over groups q of one
   row each, added 16 int32 lanes at a time (GCC vector extensions: one AVX-512 add, or two
   AVX2 ones), for blocks of pixels whose sums stay in registers.

   The source only indexes, adds, subtracts, compares and moves integers. Every address is a
   sum of precomputed offsets: digit[j][x] = x B^j O and base[q] = q B^g O arrive from Python
   (built with arange steps), and window, pixel and plane offsets are running sums. The only
   scaling is the one every array access implies (an element index scaled by the element size
   in the load/store address, as in any gather). No floating-point type appears;
   tests/tables/test_native.py checks this file for that. Threads: OpenMP over images, each
   thread taking every threads-th image. */

#include <stdint.h>
#include <stdlib.h>
#include <omp.h>

#define MAX_GROUP 4

/* Geometry of one call; every size is computed in Python from the shapes (never from data). */
typedef struct {
    int64_t images, channels, height, width;   /* input [N, C, H, W] */
    int64_t kernel, stride, pad_index;          /* square window; index of the zero row */
    int64_t padded_width, padded_plane;         /* Wp = W + 2 pad, Hp Wp */
    int64_t padded_size, interior;              /* C Hp Wp, pad Wp + pad */
    int64_t image_in;                           /* C H W */
    int64_t out_h, out_w, pixels;               /* Ho, Wo, P = Ho Wo */
    int64_t outputs, groups, group, entries;    /* O, Q, g, B */
    int64_t positions;                          /* Q g (fan-in padded to whole groups) */
    int64_t image_out, vectors;                 /* O P; O / 16 if 16 divides O, else 0 */
    int64_t levels;                             /* thresholds per channel (0: acc + bias) */
    int64_t threads;
} geometry;

/* pos[k]: offset of window position k = (c, dy, dx) (weight order) from the window's corner in
   the padded image; positions beyond the fan-in (group padding) keep offset 0: their rows are
   the same whatever index they read. */
static void window_offsets(const geometry *s, int64_t *pos) {
    int64_t k = 0, plane = 0;
    for (int64_t c = 0; c < s->channels; c++) {
        int64_t row = plane;
        for (int64_t dy = 0; dy < s->kernel; dy++) {
            for (int64_t dx = 0; dx < s->kernel; dx++) {
                pos[k] = row + dx;
                k++;
            }
            row += s->padded_width;
        }
        plane += s->padded_plane;
    }
}

/* pix[p]: offset of output pixel p's window corner, row steps of stride Wp, column steps of
   stride. */
static void pixel_offsets(const geometry *s, int64_t *pix) {
    int64_t row_step = 0;
    for (int64_t i = 0; i < s->stride; i++) row_step += s->padded_width;
    int64_t p = 0, row = 0;
    for (int64_t oy = 0; oy < s->out_h; oy++) {
        int64_t col = row;
        for (int64_t ox = 0; ox < s->out_w; ox++) {
            pix[p] = col;
            p++;
            col += s->stride;
        }
        row += row_step;
    }
}

/* addr[j][i] = digit_j[x] for the padded image: pad_index outside, the input's index inside. */
static void digit_planes(const geometry *s, const int64_t *x, const int32_t *const *digit,
                         int32_t *const *addr) {
    for (int64_t j = 0; j < s->group; j++) {
        const int32_t *d = digit[j];
        int32_t *a = addr[j];
        const int32_t pad = d[s->pad_index];
        for (int64_t i = 0; i < s->padded_size; i++) a[i] = pad;
        int64_t src = 0, plane = s->interior;
        for (int64_t c = 0; c < s->channels; c++) {
            int64_t row = plane;
            for (int64_t y = 0; y < s->height; y++) {
                for (int64_t xx = 0; xx < s->width; xx++) {
                    a[row + xx] = d[x[src]];
                    src++;
                }
                row += s->padded_width;
            }
            plane += s->padded_plane;
        }
    }
}

/* 16 int32 lanes (one AVX-512 register; two AVX2 ones), loaded from any 4-byte address. */
typedef int32_t lanes16 __attribute__((vector_size(64), aligned(4)));
#define MAX_VECTORS 64 /* channels up to 1024 in vectors of 16 */

/* Window address of pixel p in group q: base[q] + sum_j addr[j][pix[p] + pos[q g + j]]. */
static inline __attribute__((always_inline)) int32_t row_offset(
    int32_t *const *addr, const int32_t *base, const int64_t *pos, const int64_t at,
    const int64_t q, const int64_t k, const int64_t group) {
    int32_t offset = base[q];
    for (int64_t j = 0; j < group; j++) offset += addr[j][at + pos[k + j]];
    return offset;
}

/* A block of TILE pixels (p0 .. p0 + TILE - 1, channels in vectors of 16: O = 16 VECTORS):
   sum = the sum over groups q of the row at row_offset (the gather-add; a group's lane
   pointers are found once per block, and the TILE VECTORS sums stay in registers); then per
   channel o the count #{k : v > u[k][o]} with v = sum (ascending channel) or -sum
   (descending: flip[o] = -1, thresholds already negated) and u = tau - 1 clamped to int32, i.e.
   the number of thresholds passed (a true vector compare is -1, so the count subtracts it);
   with no thresholds, sum + bias[o]. u is [levels][O]. Results go pixel-major to result. */
static inline __attribute__((always_inline)) void pixel_block(
    const geometry *s, const int32_t *rows, const int32_t *base, const int64_t *pos,
    const int64_t *pix, int32_t *const *addr, const int32_t *tau, const int32_t *flip,
    const int64_t *bias, int64_t *result, const int64_t group, const int64_t vectors,
    const int64_t tile) {
    lanes16 sum[MAX_VECTORS];
    int64_t i = 0;
    for (int64_t t = 0; t < tile; t++) {
        for (int64_t v = 0; v < vectors; v++) {
            sum[i] = (lanes16){0};
            i++;
        }
    }
    int64_t k = 0;
    for (int64_t q = 0; q < s->groups; q++) {
        const int32_t *lane[MAX_GROUP];
        for (int64_t j = 0; j < group; j++) lane[j] = addr[j] + pos[k + j];
        i = 0;
        for (int64_t t = 0; t < tile; t++) {
            int32_t offset = base[q];
            for (int64_t j = 0; j < group; j++) offset += lane[j][pix[t]];
            const lanes16 *row = (const lanes16 *)(rows + offset);
            for (int64_t v = 0; v < vectors; v++) {
                sum[i] += row[v];
                i++;
            }
        }
        k += group;
    }
    const lanes16 *flips = (const lanes16 *)flip;
    i = 0;
    for (int64_t t = 0; t < tile; t++) {
        int64_t o = 0;
        for (int64_t v = 0; v < vectors; v++) {
            lanes16 value = sum[i];
            if (s->levels != 0) {
                const lanes16 signed_sum = (value ^ flips[v]) - flips[v];
                const lanes16 *u = (const lanes16 *)tau;
                value = (lanes16){0};
                for (int64_t level = 0; level < s->levels; level++) {
                    value -= signed_sum > u[v];
                    u += vectors;
                }
            }
            for (int64_t lane = 0; lane < 16; lane++) {
                result[o] = s->levels == 0 ? value[lane] + bias[o] : value[lane];
                o++;
            }
            i++;
        }
        result += s->outputs;
    }
}

/* One image in blocks of TILE pixels (TILE VECTORS = 16 registers of sums), the rest one by
   one. */
static inline __attribute__((always_inline)) void vector_image(
    const geometry *s, const int32_t *rows, const int32_t *base, const int64_t *pos,
    const int64_t *pix, int32_t *const *addr, const int32_t *tau, const int32_t *flip,
    const int64_t *bias, int64_t *result, const int64_t group, const int64_t vectors,
    const int64_t tile) {
    int64_t p = 0, block_out = 0;
    for (int64_t t = 0; t < tile; t++) block_out += s->outputs;
    for (; p + tile <= s->pixels; p += tile) {
        pixel_block(s, rows, base, pos, pix + p, addr, tau, flip, bias, result, group, vectors,
                    tile);
        result += block_out;
    }
    for (; p < s->pixels; p++) {
        pixel_block(s, rows, base, pos, pix + p, addr, tau, flip, bias, result, group, vectors,
                    1);
        result += s->outputs;
    }
}

/* The same for any O, one channel at a time (a classifier's few outputs). */
static void scalar_image(const geometry *s, const int32_t *rows, const int32_t *base,
                         const int64_t *pos, const int64_t *pix, int32_t *const *addr,
                         const int32_t *tau, const int32_t *flip, const int64_t *bias,
                         int64_t *result, int32_t *sum) {
    for (int64_t p = 0; p < s->pixels; p++) {
        const int64_t at = pix[p];
        for (int64_t o = 0; o < s->outputs; o++) sum[o] = 0;
        int64_t k = 0;
        for (int64_t q = 0; q < s->groups; q++) {
            const int32_t *row = rows + row_offset(addr, base, pos, at, q, k, s->group);
            for (int64_t o = 0; o < s->outputs; o++) sum[o] += row[o];
            k += s->group;
        }
        for (int64_t o = 0; o < s->outputs; o++) {
            const int32_t value = (sum[o] ^ flip[o]) - flip[o];
            int64_t count = 0;
            const int32_t *t = tau;
            for (int64_t level = 0; level < s->levels; level++) {
                count += value > t[o];
                t += s->outputs;
            }
            result[o] = s->levels == 0 ? sum[o] + bias[o] : count;
        }
        result += s->outputs;
    }
}

/* out[o][p] = result[p][o]: the pixel-major results stored plane by plane (contiguous writes;
   storing each pixel's channels straight into planes P apart thrashes the cache sets). */
static void write_planes(const geometry *s, const int64_t *result, int64_t *out) {
    int64_t *plane = out;
    for (int64_t o = 0; o < s->outputs; o++) {
        const int64_t *r = result + o;
        for (int64_t p = 0; p < s->pixels; p++) {
            plane[p] = r[0];
            r += s->outputs;
        }
        plane += s->pixels;
    }
}

/* vector_image with the group and (for 16, 32, 64 channels) the vector count and the tile as
   constants. */
static inline __attribute__((always_inline)) void run_group(
    const geometry *s, const int32_t *rows, const int32_t *base, const int64_t *pos,
    const int64_t *pix, int32_t *const *addr, const int32_t *tau, const int32_t *flip,
    const int64_t *bias, int64_t *result, const int64_t group) {
    switch (s->vectors) {
        case 1: vector_image(s, rows, base, pos, pix, addr, tau, flip, bias, result, group, 1, 16); break;
        case 2: vector_image(s, rows, base, pos, pix, addr, tau, flip, bias, result, group, 2, 8); break;
        case 4: vector_image(s, rows, base, pos, pix, addr, tau, flip, bias, result, group, 4, 4); break;
        default: vector_image(s, rows, base, pos, pix, addr, tau, flip, bias, result, group, s->vectors, 1); break;
    }
}

static void run_image(const geometry *s, const int32_t *rows, const int32_t *base,
                      const int64_t *pos, const int64_t *pix, int32_t *const *addr,
                      const int32_t *tau, const int32_t *flip, const int64_t *bias,
                      int64_t *result, int32_t *sum) {
    if (s->vectors == 0) {
        scalar_image(s, rows, base, pos, pix, addr, tau, flip, bias, result, sum);
        return;
    }
    switch (s->group) {
        case 1: run_group(s, rows, base, pos, pix, addr, tau, flip, bias, result, 1); break;
        case 2: run_group(s, rows, base, pos, pix, addr, tau, flip, bias, result, 2); break;
        case 3: run_group(s, rows, base, pos, pix, addr, tau, flip, bias, result, 3); break;
        default: run_group(s, rows, base, pos, pix, addr, tau, flip, bias, result, 4); break;
    }
}

/* The unit on a batch: x [N, C, H, W] int64 indices -> out [N, O, Ho, Wo] int64. digit is
   [g][B] (x B^j O), base [Q] (q B^g O), rows [Q B^g, O], tau [levels][O] and flip [O] int32,
   bias [O] int64.
   Returns 0, or 1 when a buffer could not be allocated. */
int hwquant_table_unit(const geometry *s, const int64_t *x, const int32_t *rows,
                       const int32_t *digit, const int32_t *base, const int32_t *tau,
                       const int32_t *flip, const int64_t *bias, int64_t *out) {
    int64_t *pos = calloc(s->positions, sizeof(int64_t));
    int64_t *pix = calloc(s->pixels, sizeof(int64_t));
    int failed = pos == NULL || pix == NULL;
    if (!failed) {
        window_offsets(s, pos);
        pixel_offsets(s, pix);
        const int32_t *digits[MAX_GROUP];
        const int32_t *d = digit;
        for (int64_t j = 0; j < s->group; j++) {
            digits[j] = d;
            d += s->entries;
        }
#pragma omp parallel num_threads(s->threads) reduction(|| : failed)
        {
            int32_t *addr[MAX_GROUP] = {NULL, NULL, NULL, NULL};
            int32_t *sum = calloc(s->outputs, sizeof(int32_t));
            int64_t *result = calloc(s->image_out, sizeof(int64_t));
            int ok = sum != NULL && result != NULL;
            for (int64_t j = 0; j < s->group; j++) {
                addr[j] = calloc(s->padded_size, sizeof(int32_t));
                ok = ok && addr[j] != NULL;
            }
            if (ok) {
                const int64_t step = omp_get_num_threads();
                int64_t in_step = 0, out_step = 0;
                for (int64_t i = 0; i < step; i++) {
                    in_step += s->image_in;
                    out_step += s->image_out;
                }
                const int64_t first = omp_get_thread_num();
                const int64_t *xi = x;
                int64_t *oi = out;
                for (int64_t i = 0; i < first; i++) {
                    xi += s->image_in;
                    oi += s->image_out;
                }
                for (int64_t n = first; n < s->images; n += step) {
                    digit_planes(s, xi, digits, addr);
                    run_image(s, rows, base, pos, pix, addr, tau, flip, bias, result, sum);
                    write_planes(s, result, oi);
                    xi += in_step;
                    oi += out_step;
                }
            }
            failed = failed || !ok;
            for (int64_t j = 0; j < s->group; j++) free(addr[j]);
            free(sum);
            free(result);
        }
    }
    free(pos);
    free(pix);
    return failed;
}

/* Residual add through its table: out[i] = table[row_start[a[i]] + b[i]] (row_start[r] is the
   offset r |A2| of row r, an arange step made in Python), for count elements. */
void hwquant_lookup_add(int64_t count, const int64_t *table, const int64_t *row_start,
                        const int64_t *a, const int64_t *b, int64_t *out, int64_t threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < count; i++) out[i] = table[row_start[a[i]] + b[i]];
}
