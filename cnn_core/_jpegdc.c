/* A baseline JPEG's scan decoded to 1/8-scale samples, on two cores (cnn_core/jpegdc.py drives it).

   At 1/8 scale libjpeg keeps, of each 8x8 block, the DC coefficient (1x1 IDCT) or, for chroma it scales
   by IDCT instead of upsampling (4:2:0), a 2x2 IDCT of the low coefficients. Almost all of its time goes
   into the entropy pass, which is sequential: each Huffman code starts where the previous one ends. This
   file splits that pass over two threads. The second one starts decoding at the middle of the data as if
   an MCU began there. Huffman codes resynchronise quickly, so after a short while it is decoding the true
   MCUs; the first thread, decoding from the start, checks each of its MCU boundaries against the MCU
   starts the second one recorded and stops at the first exact match (same bit, same state: from there
   both decode the same symbols). DC coefficients are coded as differences: the second thread sums them
   from zero, and the first one, which knows the true sums where they met, tells it the offsets. Then
   each thread turns its half into samples and colour. When they never meet, or the second thread falls
   behind (a busy machine), the first one decodes the rest itself, so the output never depends on the
   guess or on the second thread being scheduled.

   Structure (markers, tables, sampling, sizes) is parsed and checked in Python; this file walks the
   entropy-coded bytes and trusts nothing in them: table indexes are masked or range-checked, output
   indexes are bounded by construction and checked, reading past the data yields zero bits and fails the
   call, and any inconsistency returns a negative code so that the caller falls back to Pillow. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LOOKAHEAD 10
#define MAX_BLOCKS 10
#define SKIP_BITS 12
#define FULL 25 /* coefficients kept of a 2x2-IDCT block: rows and columns 0, 1, 3, 5, 7 */
#define SLOTS 26 /* values stored per full block: the FULL kept ones and a slot for all the others */

typedef struct {
    const uint8_t *p, *end;
    uint64_t buf;  /* next bits, most significant first */
    int bits;      /* valid bits in buf */
    int at_marker; /* the data stopped at a marker: zero bits are supplied */
    int64_t zeros; /* zero bits supplied after the data stopped */
    int64_t loaded; /* bits put into buf so far, counted without stuffing, from the start of the scan */
} reader;

typedef struct {
    const uint16_t *lut;      /* 1 << LOOKAHEAD entries: (code length << 8) | symbol; 0: a longer code */
    const int32_t *maxcode;   /* [18] largest code of each length, -1 when none */
    const int32_t *valoffset; /* [17] symbol index of a code of each length = code + valoffset */
    const uint8_t *huffval;   /* [256] */
    uint16_t *skip;           /* AC tables of DC-only blocks: 1 << SKIP_BITS entries (see build_skip) */
} table;

typedef struct {
    int dc, ac, full, quant; /* table slots (DC 0-3, AC 4-7), 2x2 IDCT or DC only, quant table */
    int64_t plane;           /* offset of its samples in out */
    int64_t width;           /* samples per row of its plane */
    int hs, vs;              /* blocks per MCU across and down */
    int fx, fy;              /* log2 of the output pixels per sample across and down (box upsampling) */
} component;

typedef struct {
    int comp, dx, dy, rec; /* component, place in the MCU, offset of its values in an MCU record */
} block;

typedef struct {
    const uint8_t *data;
    int64_t len;
    int ncomps, nblocks, rec_len;
    component comps[4];
    block blocks[MAX_BLOCKS];
    table tabs[8];
} scan;

static void fill_slow(reader *r) {
    while (r->bits <= 56) {
        uint64_t c = 0;
        if (!r->at_marker && r->p < r->end) {
            c = r->p[0];
            if (c == 0xFF) {
                if (r->p + 1 < r->end && r->p[1] == 0x00) {
                    r->p += 2; /* a stuffed 0xFF data byte */
                } else {
                    r->at_marker = 1; /* a marker or the end: the caller deals with it */
                    c = 0;
                    r->zeros += 8;
                }
            } else {
                r->p++;
            }
        } else {
            r->zeros += 8;
        }
        r->buf |= c << (56 - r->bits);
        r->bits += 8;
        r->loaded += 8;
    }
}

static inline void fill(reader *r) {
    if (!r->at_marker && r->end - r->p >= 8) {
        uint64_t v;
        memcpy(&v, r->p, 8);
        uint64_t x = ~v; /* a 0xFF byte of v is a zero byte of x */
        if (((x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL) == 0) {
            int n = (63 - r->bits) >> 3;
            int total = r->bits + 8 * n;
            v = __builtin_bswap64(v) >> r->bits;
            r->buf |= v & ~(~0ULL >> total);
            r->p += n;
            r->bits = total;
            r->loaded += 8 * n;
            return;
        }
    }
    fill_slow(r);
}

static inline void skip(reader *r, int n) {
    r->buf <<= n;
    r->bits -= n;
}

/* Bits consumed so far, counted without stuffing, from the start of the scan. */
static inline int64_t position(const reader *r) { return r->loaded - r->bits; }

/* One Huffman symbol, or -1 for a code the table lacks. Needs bits >= 16. */
static inline int decode(reader *r, const table *t) {
    uint32_t e = t->lut[r->buf >> (64 - LOOKAHEAD)];
    if (e) {
        skip(r, (int)(e >> 8));
        return (int)(e & 0xFF);
    }
    int len = LOOKAHEAD + 1;
    int32_t code = (int32_t)(r->buf >> (64 - len));
    while (len <= 16 && code > t->maxcode[len]) {
        len++;
        code = (int32_t)(r->buf >> (64 - len));
    }
    if (len > 16) return -1;
    int32_t i = code + t->valoffset[len];
    if (i < 0 || i > 255) return -1;
    skip(r, len);
    return t->huffval[i];
}

/* For the AC coefficients of a DC-only block only the number of bits and of coefficients matter, so
   several short codes can be stepped over with one lookup: entry = bits used (4 bits) | coefficients
   advanced (7 bits) << 4 | EOB seen << 11, for as many whole symbols as the first SKIP_BITS bits hold
   (stopping after an EOB, or once past 64 coefficients); 0 when not even one symbol fits. */
static void build_skip(const table *t, uint16_t *skip) {
    for (uint32_t idx = 0; idx < (1u << SKIP_BITS); idx++) {
        uint32_t window = idx, used = 0, adv = 0, eob = 0;
        while (!eob && adv <= 64) {
            int len = 1, sym = -1;
            for (; len <= 16 && used + len <= SKIP_BITS; len++) {
                int32_t code = (int32_t)((window >> (SKIP_BITS - used - len)) & ((1u << len) - 1));
                if (code <= t->maxcode[len]) {
                    int32_t i = code + t->valoffset[len];
                    sym = (i >= 0 && i <= 255) ? t->huffval[i] : -1;
                    break;
                }
            }
            if (sym < 0 || used + len + (sym & 15) > SKIP_BITS) break;
            used += len + (sym & 15);
            if (sym == 0x00) eob = 1;
            else adv += (sym & 15) ? (uint32_t)(sym >> 4) + 1 : 16;
        }
        skip[idx] = used ? (uint16_t)(used | adv << 4 | eob << 11) : 0;
    }
}

static const uint8_t natural[64] = {
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14,
    21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60,
    61, 54, 47, 55, 62, 63};

/* Where the k-th coefficient in zigzag order goes in a full block's record: its kept slot, or FULL for
   the ones the 2x2 IDCT never reads (stored and ignored, which is cheaper than a branch). */
static uint8_t kept[64];

static void init_kept(void) {
    static const int8_t slot[8] = {0, 1, -1, 2, -1, 3, -1, 4};
    for (int k = 0; k < 64; k++) {
        int r = slot[natural[k] >> 3], c = slot[natural[k] & 7];
        kept[k] = (r < 0 || c < 0) ? FULL : (uint8_t)(r * 5 + c);
    }
}

/* JPEG's EXTEND of s magnitude bits v to a signed value, without a branch (the sign is a coin toss). */
static inline int extend(int v, int s) { return v - ((((v >> (s - 1)) & 1) ^ 1) * ((1 << s) - 1)); }

/* The bit buffer in locals inside the hot loop (a struct behind a pointer would go through memory). */
#define SYNC_OUT() (r->buf = buf, r->bits = bits)
#define SYNC_IN() (buf = r->buf, bits = r->bits)
#define ENSURE() do { if (bits < 32) { SYNC_OUT(); fill(r); SYNC_IN(); } } while (0)
#define DROP(n) do { buf <<= (n); bits -= (n); } while (0)

/* A Huffman symbol into sym (-1: no such code), from locals buf/bits. */
#define DECODE(t, sym) do { \
        uint32_t e_ = (t)->lut[buf >> (64 - LOOKAHEAD)]; \
        if (e_) { DROP((int)(e_ >> 8)); (sym) = (int)(e_ & 0xFF); } \
        else { SYNC_OUT(); (sym) = decode(r, (t)); SYNC_IN(); } \
    } while (0)

/* One MCU into rec: each block's DC predictor after it (pred, updated: DC is coded as a difference) and
   the kept coefficients of full blocks. 0, or -1 on a code no table has or a run past the block. */
static int decode_mcu(const scan *s, reader *r, int16_t *rec, int *pred) {
    uint64_t buf = r->buf;
    int bits = r->bits;
    memset(rec, 0, sizeof(int16_t) * (size_t)s->rec_len);
    for (int b = 0; b < s->nblocks; b++) {
        const block *bl = &s->blocks[b];
        const component *c = &s->comps[bl->comp];
        const table *dc = &s->tabs[c->dc], *ac = &s->tabs[c->ac];
        int16_t *out = rec + bl->rec;
        int sym;
        ENSURE();
        DECODE(dc, sym);
        if (sym < 0 || sym > 15) goto fail;
        if (sym) {
            int v = (int)(buf >> (64 - sym));
            DROP(sym);
            int diff = extend(v, sym);
            pred[bl->comp] = (int)((unsigned)pred[bl->comp] + (unsigned)diff); /* wraps; only 16 bits count */
        }
        out[0] = (int16_t)pred[bl->comp]; /* libjpeg keeps an int and stores the coefficient as a short */
        int k = 1;
        if (c->full) {
            for (; k < 64; k++) {
                ENSURE();
                DECODE(ac, sym);
                if (sym < 0) goto fail;
                int size = sym & 15;
                if (size) {
                    k += sym >> 4;
                    if (k > 63) goto fail;
                    int v = (int)(buf >> (64 - size));
                    DROP(size);
                    out[kept[k]] = (int16_t)extend(v, size);
                } else {
                    if ((sym >> 4) != 15) break;
                    k += 15;
                }
            }
        } else {
            while (k < 64) {
                ENSURE();
                uint32_t e = ac->skip[buf >> (64 - SKIP_BITS)];
                /* the symbols it covers must all lie in this block (an EOB needs k < 64 before it) */
                if (e && k + (int)((e >> 4) & 127) + (int)((e >> 11) & 1) <= 64) {
                    DROP((int)(e & 15));
                    k += (int)((e >> 4) & 127);
                    if (e & 0x800) break;
                    continue;
                }
                DECODE(ac, sym);
                if (sym < 0) goto fail;
                int size = sym & 15;
                if (size) {
                    DROP(size);
                    k += (sym >> 4) + 1;
                } else {
                    if ((sym >> 4) != 15) break;
                    k += 16;
                }
            }
            if (k > 64) goto fail; /* a run past the end of the block */
        }
    }
    SYNC_OUT();
    return 0;
fail:
    SYNC_OUT();
    return -1;
}

static void start_reader(reader *r, const scan *s, int64_t at, int64_t pos) {
    r->p = s->data + at;
    r->end = s->data + s->len;
    r->buf = 0;
    r->bits = 0;
    r->at_marker = 0;
    r->zeros = 0;
    r->loaded = pos;
}

/* Bits read past the data (the zero bits supplied after it) have been consumed. */
static inline int overrun(const reader *r) { return r->zeros > r->bits; }

/* Stuffing bytes (the 00 after a data byte 0xFF) in data[0, end). */
static int64_t stuffing(const uint8_t *data, int64_t end) {
    int64_t n = 0;
    const uint8_t *p = data, *stop = data + end;
    while (p + 1 < stop && (p = memchr(p, 0xFF, (size_t)(stop - p - 1))) != NULL) {
        if (p[1] == 0x00) n++;
        p++;
    }
    return n;
}

/* After the last MCU libjpeg reads on to the next marker and refuses anything but the end of the image:
   so do we (a scan running into a stray marker is left to Pillow, which then refuses the file). */
static int ends_at_eoi(const uint8_t *p, const uint8_t *end) {
    for (; p + 1 < end; p++)
        if (p[0] == 0xFF && p[1] != 0x00 && p[1] != 0xFF) return p[1] == 0xD9;
    return 0;
}

/* ----------------------------------------------------------------------------------- samples and colour */

static uint8_t range_limit[1024];

static void init_range_limit(void) {
    /* libjpeg's post-IDCT limiting: x + 128 clamped to 0..255, indexed by x & 1023 */
    for (int i = 0; i < 1024; i++) range_limit[i] = i < 128 ? i + 128 : i < 512 ? 255 : i < 896 ? 0 : i - 896;
}

static inline int64_t descale(int64_t x, int n) { return (x + ((int64_t)1 << (n - 1))) >> n; }

static inline int outside(int64_t v, int64_t lo, int64_t hi) { return (v < lo) | (v > hi); }

/* libjpeg's jpeg_idct_2x2 (same integer arithmetic, same results) on the kept coefficients d with DC dc;
   q: their quantisation steps, qk: those times the IDCT's constants. Returns 1 when some value leaves the
   range where libjpeg-turbo's SIMD version of it (16-bit lanes, saturating) is known to agree with this
   C arithmetic (never for a real photo's coefficients; a damaged file's can): the caller then leaves
   the file to Pillow rather than risk a different pixel. */
static inline int idct_2x2(const int16_t *d, int dc, const int64_t *qk, const int32_t *q, uint8_t *o0,
                           uint8_t *o1) {
    int any = 0;
    int32_t most = dc * q[0]; /* int32 is exact: |d| <= 32768, q <= 65535 */
    most = most < 0 ? -most : most;
    for (int i = 1; i < FULL; i++) { /* vectorised: is there any AC, and the largest |coefficient x step| */
        int32_t a = d[i] * q[i];
        any |= d[i];
        most = (a < 0 ? -a : a) > most ? (a < 0 ? -a : a) : most;
    }
    if (!any) {
        int64_t w = descale(dc * qk[0], 13), v = descale(w * 32768, 20);
        o0[0] = o0[1] = o1[0] = o1[1] = range_limit[v & 1023];
        return (most > 32767) | outside(w, -32768, 32767) | outside(v, -512, 511);
    }
    /* With every |coefficient x step| <= 594 the workspace stays within 10.5 x 594 and the output within
       0.86 x 594 < 512 (sums of the IDCT's constants), so only larger values need the checks below. */
    int check = most > 594, bad = most > 32767;
    int64_t w0[5], w1[5];
    for (int c = 0; c < 5; c++) {
        int64_t even = (c ? d[c] : dc) * qk[c];
        int64_t odd = d[5 + c] * qk[5 + c] + d[10 + c] * qk[10 + c] + d[15 + c] * qk[15 + c] + d[20 + c] * qk[20 + c];
        w0[c] = descale(even + odd, 13);
        w1[c] = descale(even - odd, 13);
    }
    const int64_t k1 = 29692, k3 = -10426, k5 = 6967, k7 = -5906;
    int64_t v[4];
    int64_t even = w0[0] * 32768, odd = w0[1] * k1 + w0[2] * k3 + w0[3] * k5 + w0[4] * k7;
    v[0] = descale(even + odd, 20);
    v[1] = descale(even - odd, 20);
    even = w1[0] * 32768, odd = w1[1] * k1 + w1[2] * k3 + w1[3] * k5 + w1[4] * k7;
    v[2] = descale(even + odd, 20);
    v[3] = descale(even - odd, 20);
    if (check) {
        for (int c = 0; c < 5; c++) bad |= outside(w0[c], -32768, 32767) | outside(w1[c], -32768, 32767);
        for (int i = 0; i < 4; i++) bad |= outside(v[i], -512, 511);
    }
    o0[0] = range_limit[v[0] & 1023];
    o0[1] = range_limit[v[1] & 1023];
    o1[0] = range_limit[v[2] & 1023];
    o1[1] = range_limit[v[3] & 1023];
    return bad;
}

static int32_t cr_r[256], cb_b[256], cr_g[256], cb_g[256];

static void init_colour(void) {
    /* libjpeg's YCbCr -> RGB tables (16-bit fixed point) */
    for (int i = 0; i < 256; i++) {
        int32_t x = i - 128;
        cr_r[i] = (91881 * x + 32768) >> 16;  /* FIX(1.40200) */
        cb_b[i] = (116130 * x + 32768) >> 16; /* FIX(1.77200) */
        cr_g[i] = -46802 * x;                 /* -FIX(0.71414) */
        cb_g[i] = -22554 * x + 32768;         /* -FIX(0.34414), with the rounding half */
    }
}

static inline uint8_t clamp(int32_t v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* What turning records into pixels needs. */
typedef struct {
    const scan *s;
    int64_t mcus_x, total, out_w, out_h;
    int64_t rows_per_mcu_row; /* output rows an MCU row makes */
    int64_t qk[4][FULL];
    int32_t q[4][FULL];
    uint8_t *out, *rgb;
} image;

/* Samples of MCUs [m0, m1), whose records start at rec; offset: added to each component's DC. Returns
   nonzero if a 2x2 IDCT left the range where libjpeg-turbo is known to give the same pixels. */
static int samples(const image *im, const int16_t *rec, int64_t m0, int64_t m1, const int *offset) {
    const scan *s = im->s;
    int bad = 0;
    for (int64_t m = m0; m < m1; m++, rec += s->rec_len) {
        int64_t my = m / im->mcus_x, mx = m % im->mcus_x;
        for (int b = 0; b < s->nblocks; b++) {
            const block *bl = &s->blocks[b];
            const component *c = &s->comps[bl->comp];
            const int16_t *d = rec + bl->rec;
            int dc = (int16_t)(uint16_t)((unsigned)d[0] + (unsigned)offset[bl->comp]);
            int64_t row = my * c->vs + bl->dy, col = mx * c->hs + bl->dx;
            if (c->full) {
                uint8_t *o0 = im->out + c->plane + 2 * row * c->width + 2 * col;
                bad |= idct_2x2(d, dc, im->qk[bl->comp], im->q[bl->comp], o0, o0 + c->width);
            } else {
                im->out[c->plane + row * c->width + col] = range_limit[descale(dc * im->qk[bl->comp][0], 3) & 1023];
            }
        }
    }
    return bad;
}

/* RGB of output rows [y0, y1) (3 components: Y, Cb, Cr). */
static void colour(const image *im, int64_t y0, int64_t y1) {
    if (!im->rgb) return;
    const component *c = im->s->comps;
    if (y1 > im->out_h) y1 = im->out_h;
    for (int64_t y = y0; y < y1; y++) {
        const uint8_t *ry = im->out + c[0].plane + (y >> c[0].fy) * c[0].width;
        const uint8_t *rb = im->out + c[1].plane + (y >> c[1].fy) * c[1].width;
        const uint8_t *rr = im->out + c[2].plane + (y >> c[2].fy) * c[2].width;
        uint8_t *o = im->rgb + y * im->out_w * 3;
        for (int64_t x = 0; x < im->out_w; x++, o += 3) {
            int32_t yy = ry[x >> c[0].fx], cb = rb[x >> c[1].fx], cr = rr[x >> c[2].fx];
            o[0] = clamp(yy + cr_r[cr]);
            o[1] = clamp(yy + ((cb_g[cb] + cr_g[cr]) >> 16));
            o[2] = clamp(yy + cb_b[cb]);
        }
    }
}

/* Samples and colour of MCUs [m0, m1), colouring the output rows of the MCU rows wholly inside. */
static int finish(const image *im, const int16_t *rec, int64_t m0, int64_t m1, const int *offset) {
    if (samples(im, rec, m0, m1, offset)) return -6;
    int64_t first = (m0 + im->mcus_x - 1) / im->mcus_x, last = m1 / im->mcus_x; /* whole MCU rows */
    if (last > first) colour(im, first * im->rows_per_mcu_row, last * im->rows_per_mcu_row);
    return 0;
}

/* ----------------------------------------------------------------------------------- the second thread */

enum { RUNNING, CLAIMED, DONE, GAVE_UP, ABORTED };

typedef struct {
    const scan *s;
    const image *im;
    int64_t start;    /* byte where it starts */
    int64_t max_mcus; /* room in its arrays */
    int16_t *rec;     /* its MCU records, DC summed from zero at its start */
    int64_t *starts;  /* bit position of each of its MCU starts */
    int32_t *preds;   /* its DC sums before each MCU (4 per MCU) */
    int64_t *chain;   /* for each MCU: the first MCU of the unbroken run it belongs to */
    int64_t ok_until; /* MCUs before this one decoded without reading past the data (final when stopped) */
    int64_t rc;       /* of its finish() */
    const uint8_t *end_p; /* where its reader stopped */
    /* set by the first thread before it publishes need: where they met and the DC offsets there */
    int64_t met, met_j;
    int offset[4];
    /* shared counters, each on its own cache line so that neither thread stalls on the other's writes */
    _Alignas(64) int64_t count; /* MCUs published */
    _Alignas(64) int64_t need;  /* stop once this many are decoded (-1: not known yet) */
    _Alignas(64) int state;
    _Alignas(64) char end;
} speculation;

/* Its MCUs met_j .. met_j + (total - met) - 1 are the image's met .. total-1, all decoded in one run. */
static int usable(const speculation *sp, int64_t met, int64_t met_j, int64_t total) {
    int64_t last = met_j + (total - met);
    return last <= __atomic_load_n(&sp->count, __ATOMIC_ACQUIRE) && last <= sp->ok_until &&
           sp->chain[last - 1] <= met_j;
}

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int claim(speculation *sp, int from, int to) {
    return __atomic_compare_exchange_n(&sp->state, &from, to, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static void *speculate(void *arg) {
    speculation *sp = (speculation *)arg;
    const scan *s = sp->s;
    reader r;
    start_reader(&r, s, sp->start, 8 * (sp->start - stuffing(s->data, sp->start)));
    int pred[4] = {0, 0, 0, 0};
    int64_t j = 0, chain_start = 0, ok_until = 0;
    while (j < sp->max_mcus && __atomic_load_n(&sp->state, __ATOMIC_ACQUIRE) == RUNNING) {
        int64_t need = __atomic_load_n(&sp->need, __ATOMIC_ACQUIRE); /* a line only written to stop us */
        if ((need >= 0 && j >= need) || overrun(&r)) break;
        int64_t at = position(&r);
        int before[4] = {pred[0], pred[1], pred[2], pred[3]};
        if (decode_mcu(s, &r, sp->rec + j * s->rec_len, pred) < 0) {
            /* that was no MCU boundary: guess again a bit past where the failed decode stopped */
            if (r.bits < 32) fill(&r);
            skip(&r, 1);
            chain_start = j;
            continue;
        }
        sp->starts[j] = at;
        memcpy(sp->preds + 4 * j, before, sizeof before);
        sp->chain[j] = chain_start;
        if (!overrun(&r)) ok_until = j + 1;
        __atomic_store_n(&sp->count, j + 1, __ATOMIC_RELEASE);
        j++;
    }
    sp->ok_until = ok_until;
    sp->end_p = r.p;
    __atomic_store_n(&sp->count, j, __ATOMIC_RELEASE);
    /* Reached the end before the first thread reached us: wait for it to say where we met (it will, or
       it gives up on us), so that we can still finish our half while it finishes its own. */
    int64_t need;
    while ((need = __atomic_load_n(&sp->need, __ATOMIC_ACQUIRE)) < 0 &&
           __atomic_load_n(&sp->state, __ATOMIC_ACQUIRE) == RUNNING)
        relax();
    if (need >= 0 && usable(sp, sp->met, sp->met_j, sp->im->total) && claim(sp, RUNNING, CLAIMED)) {
        /* the image from where they met to the end is ours to finish */
        sp->rc = finish(sp->im, sp->rec + sp->met_j * s->rec_len, sp->met, sp->im->total, sp->offset);
        __atomic_store_n(&sp->state, DONE, __ATOMIC_RELEASE);
    } else {
        claim(sp, RUNNING, GAVE_UP);
    }
    return NULL;
}

/* ----------------------------------------------------------------------------------------- entry point */

/* Decode one scan into 8-bit sample planes and, for 3 components, RGB. comps: 10 int64 per component (dc
   table, ac table, full, quant table, plane offset, plane width in samples, blocks across and down per
   MCU, log2 of the upsampling across and down); blocks: 3 ints per block of an MCU (component, dx, dy);
   quant: 4 x 64 natural order. threads: 1 or 2; split: the byte where the second thread starts (0: the
   middle; tests move it). Returns the MCU where the threads met (0 if one thread did everything), or a
   negative code. */
int64_t jdc_decode(const uint8_t *data, int64_t len, int restart_interval, int64_t mcus_x, int64_t mcus_y,
                   int ncomps, const int64_t *comps, int nblocks, const int32_t *blocks, const uint16_t *luts,
                   const int32_t *maxcodes, const int32_t *valoffsets, const uint8_t *huffvals,
                   const int32_t *quant, uint8_t *out, int64_t out_len, uint8_t *rgb, int64_t out_w,
                   int64_t out_h, int threads, int64_t split) {
    static int ready = 0;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        init_kept();
        init_range_limit();
        init_colour();
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    if (out_w < 1 || out_h < 1 || (rgb && ncomps != 3)) return -10;
    if (ncomps < 1 || ncomps > 4 || nblocks < 1 || nblocks > MAX_BLOCKS || mcus_x < 1 || mcus_y < 1) return -10;
    scan s;
    s.data = data;
    s.len = len;
    s.ncomps = ncomps;
    s.nblocks = nblocks;
    for (int i = 0; i < 8; i++) {
        s.tabs[i].lut = luts + ((int64_t)i << LOOKAHEAD);
        s.tabs[i].maxcode = maxcodes + 18 * i;
        s.tabs[i].valoffset = valoffsets + 17 * i;
        s.tabs[i].huffval = huffvals + 256 * i;
        s.tabs[i].skip = NULL;
    }
    int64_t rows_per_mcu_row = -1;
    for (int c = 0; c < ncomps; c++) {
        const int64_t *ci = comps + 10 * c;
        component *k = &s.comps[c];
        k->dc = (int)ci[0];
        k->ac = (int)ci[1];
        k->full = (int)ci[2];
        k->quant = (int)ci[3];
        k->plane = ci[4];
        k->width = ci[5];
        k->hs = (int)ci[6];
        k->vs = (int)ci[7];
        k->fx = (int)ci[8];
        k->fy = (int)ci[9];
        if (k->dc < 0 || k->dc > 3 || k->ac < 4 || k->ac > 7 || k->quant < 0 || k->quant > 3) return -11;
        if (k->hs < 1 || k->hs > 4 || k->vs < 1 || k->vs > 4 || k->plane < 0 || k->width < 1) return -11;
        if (k->fx < 0 || k->fx > 2 || k->fy < 0 || k->fy > 2) return -11;
        int64_t size = (k->full ? 2 : 1);
        int64_t rows = mcus_y * k->vs * size;
        if (k->width < mcus_x * k->hs * size || k->plane + rows * k->width > out_len) return -11;
        if (((out_w - 1) >> k->fx) >= k->width || ((out_h - 1) >> k->fy) >= rows) return -11;
        int64_t rpm = (k->vs * size) << k->fy;
        if (rows_per_mcu_row >= 0 && rpm != rows_per_mcu_row) return -11;
        rows_per_mcu_row = rpm;
    }
    uint16_t skips[4][1 << SKIP_BITS];
    for (int c = 0; c < ncomps; c++) {
        table *t = &s.tabs[s.comps[c].ac];
        if (!s.comps[c].full && !t->skip) {
            t->skip = skips[s.comps[c].ac - 4];
            build_skip(t, t->skip);
        }
    }
    int rec = 0;
    for (int b = 0; b < nblocks; b++) {
        block *bl = &s.blocks[b];
        bl->comp = blocks[3 * b];
        bl->dx = blocks[3 * b + 1];
        bl->dy = blocks[3 * b + 2];
        if (bl->comp < 0 || bl->comp >= ncomps) return -12;
        const component *c = &s.comps[bl->comp];
        if (bl->dx < 0 || bl->dx >= c->hs || bl->dy < 0 || bl->dy >= c->vs) return -12;
        bl->rec = rec;
        rec += c->full ? SLOTS : 1;
    }
    s.rec_len = rec;

    int64_t total = mcus_x * mcus_y;
    image im = {.s = &s, .mcus_x = mcus_x, .total = total, .out_w = out_w, .out_h = out_h,
                .rows_per_mcu_row = rows_per_mcu_row, .out = out, .rgb = rgb};
    static const int at[5] = {0, 1, 3, 5, 7};
    static const int64_t scale[5] = {32768, 29692, -10426, 6967, -5906};
    for (int c = 0; c < ncomps; c++) {
        const int32_t *q = quant + 64 * s.comps[c].quant;
        for (int i = 0; i < FULL; i++) {
            im.q[c][i] = s.comps[c].full ? q[at[i / 5] * 8 + at[i % 5]] : q[0];
            im.qk[c][i] = im.q[c][i] * (s.comps[c].full ? scale[i / 5] : 1);
        }
    }
    int16_t *rec1 = malloc(sizeof(int16_t) * (size_t)(total * s.rec_len));
    if (!rec1) return -20;
    speculation sp;
    memset(&sp, 0, sizeof sp);
    pthread_t thread;
    int spawned = 0;
    int64_t start = split > 0 ? split : len / 2;
    while (start < len && start > 0 && data[start - 1] == 0xFF) start++;
    if (threads > 1 && restart_interval == 0 && total >= 64 && start < len) {
        sp.s = &s;
        sp.im = &im;
        sp.start = start;
        sp.max_mcus = total;
        sp.need = -1;
        sp.state = RUNNING;
        sp.rec = malloc(sizeof(int16_t) * (size_t)(total * s.rec_len));
        sp.starts = malloc(sizeof(int64_t) * (size_t)total);
        sp.preds = malloc(sizeof(int32_t) * 4 * (size_t)total);
        sp.chain = malloc(sizeof(int64_t) * (size_t)total);
        if (sp.rec && sp.starts && sp.preds && sp.chain && pthread_create(&thread, NULL, speculate, &sp) == 0)
            spawned = 1;
    }

    reader r;
    start_reader(&r, &s, 0, 0);
    int pred[4] = {0, 0, 0, 0}, zero[4] = {0, 0, 0, 0};
    int64_t met = -1, j = 0, next_rst = 0, rc = 0, m = 0;
    const uint8_t *tail = NULL; /* where the reader that decoded the last MCU stopped */
    int near = 0;
    for (; m < total; m++) {
        if (restart_interval && m && m % restart_interval == 0) {
            if (overrun(&r)) { rc = -3; break; }
            /* the rest of the byte is padding; find RSTn, reset the DC predictors */
            r.buf = 0;
            r.bits = 0;
            r.at_marker = 0;
            r.zeros = 0;
            const uint8_t *p = r.p;
            while (p + 1 < r.end && !(p[0] == 0xFF && p[1] != 0x00 && p[1] != 0xFF)) p++;
            if (p + 1 >= r.end || p[1] != 0xD0 + next_rst) { rc = -4; break; }
            r.p = p + 2;
            next_rst = (next_rst + 1) & 7;
            pred[0] = pred[1] = pred[2] = pred[3] = 0;
        }
        if (spawned && (near || (m & 31) == 0)) {
            /* far from the second thread's start, look at its progress only now and then */
            int64_t count = __atomic_load_n(&sp.count, __ATOMIC_ACQUIRE);
            int64_t pos = position(&r);
            near = count > 0 && pos >= sp.starts[0] - 8 * 4096;
            while (j < count && sp.starts[j] < pos) j++;
            if (j < count && sp.starts[j] == pos) {
                /* the same bit, both at an MCU start: from here the second thread decodes what we would */
                met = m;
                sp.met = m;
                sp.met_j = j;
                for (int c = 0; c < 4; c++) sp.offset[c] = (int)((unsigned)pred[c] - (unsigned)sp.preds[4 * j + c]);
                __atomic_store_n(&sp.need, j + (total - m), __ATOMIC_RELEASE);
                break;
            }
        }
        if (decode_mcu(&s, &r, rec1 + m * s.rec_len, pred) < 0) { rc = -1; break; }
    }
    if (rc == 0 && met >= 0) {
        rc = finish(&im, rec1, 0, met, zero);
        /* Then, until the second thread has claimed the rest, decode on ourselves: if it was descheduled
           (a busy machine) we finish alone instead of waiting for it. */
        for (; rc == 0 && m < total && __atomic_load_n(&sp.state, __ATOMIC_ACQUIRE) == RUNNING; m++)
            if (decode_mcu(&s, &r, rec1 + m * s.rec_len, pred) < 0) rc = -1;
        if (m == total || rc) claim(&sp, RUNNING, ABORTED);
        /* If it is finishing its half, wait for that by spinning: blocking in pthread_join let this core
           sleep and its wake-up took milliseconds here. It is joined at the end. */
        int state;
        while ((state = __atomic_load_n(&sp.state, __ATOMIC_ACQUIRE)) == CLAIMED) relax();
        if (state == GAVE_UP && usable(&sp, met, sp.met_j, total)) {
            /* it stopped before learning where they met, with the rest decoded: finish it for it */
            rc |= finish(&im, sp.rec + sp.met_j * s.rec_len, met, total, sp.offset);
            tail = sp.end_p;
        } else if (state == DONE) {
            rc |= sp.rc;
            tail = sp.end_p;
        } else if (rc == 0) {
            for (; m < total; m++)
                if (decode_mcu(&s, &r, rec1 + m * s.rec_len, pred) < 0) { rc = -1; break; }
            if (rc == 0 && overrun(&r)) rc = -3;
            if (rc == 0) rc = finish(&im, rec1 + met * s.rec_len, met, total, zero);
            tail = r.p;
        }
        /* the output rows of the MCU row where they met */
        if (rc == 0 && met % mcus_x)
            colour(&im, (met / mcus_x) * rows_per_mcu_row, (met / mcus_x + 1) * rows_per_mcu_row);
    } else {
        if (spawned) claim(&sp, RUNNING, ABORTED); /* it stops at its next MCU and is joined at the end */
        if (rc == 0 && overrun(&r)) rc = -3; /* the data ran out before the last MCU */
        if (rc == 0) rc = finish(&im, rec1, 0, total, zero);
        tail = r.p;
    }
    if (spawned) pthread_join(thread, NULL);
    if (rc == 0 && !(tail && ends_at_eoi(tail, data + len))) rc = -7;
    free(rec1);
    free(sp.rec);
    free(sp.starts);
    free(sp.preds);
    free(sp.chain);
    return rc < 0 ? rc : met > 0 ? met : 0;
}
