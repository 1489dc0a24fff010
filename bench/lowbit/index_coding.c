/* Which entropy coder for k-means codebook indices: the checkpoint's order-0
 * range coder (src/io/entropy.c, frequency table in front) against canonical
 * Huffman coding (Deep Compression §4 codes its indices with Huffman), both
 * with their tables counted, on the index streams of real weights.
 *
 * For each weight tensor (ndim >= 2) of each checkpoint given, and each
 * index width b = 2..8: k-means sharing of the kept weights
 * (rf_kmeans_share, the mask of a pruned tensor kept), then the bytes of
 *   - the order-0 entropy of the index stream (the bound),
 *   - b-bit packing,
 *   - the range coder (rf_sym_encode, alphabet 2^b: its exact output),
 *   - canonical Huffman: the bitstream (sum of count x code length, lengths
 *     from the Huffman tree, none above 15 here) plus the cheaper of two
 *     length tables: 4 bits per symbol of the alphabet, or a presence bitmap
 *     plus 4 bits per present symbol. Only the lengths are needed: a
 *     canonical code is fixed by them (DEFLATE's convention).
 * Build and run: bench/cbench.sh bench/lowbit/index_coding.c CKPT... */
#include "raffle/ckpt.h"
#include "raffle/lowbit.h"
#include "io/entropy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Huffman code lengths for counts c[0..k) (0 for absent symbols); returns
 * the longest. A one-symbol alphabet gets length 1. */
static int huffman_lengths(const uint64_t *c, int k, int *len) {
    uint64_t w[512];
    int parent[512], nodes = 0, leaf[256];
    int present = 0;
    for (int s = 0; s < k; s++) { len[s] = 0; if (c[s]) { leaf[s] = nodes; w[nodes] = c[s]; parent[nodes] = -1; nodes++; present++; } else leaf[s] = -1; }
    if (present == 1) { for (int s = 0; s < k; s++) if (c[s]) len[s] = 1; return 1; }
    int alive[512], na = nodes;
    for (int i = 0; i < nodes; i++) alive[i] = i;
    while (na > 1) {   /* O(n^2) is fine for 256 symbols */
        int a = -1, b = -1;
        for (int i = 0; i < na; i++) {
            int x = alive[i];
            if (a < 0 || w[x] < w[alive[a]]) { b = a; a = i; } else if (b < 0 || w[x] < w[alive[b]]) b = i;
        }
        int xa = alive[a], xb = alive[b];
        w[nodes] = w[xa] + w[xb]; parent[nodes] = -1;
        parent[xa] = nodes; parent[xb] = nodes;
        if (a > b) { int t = a; a = b; b = t; }
        alive[a] = nodes; alive[b] = alive[na - 1]; na--;
        nodes++;
    }
    int maxl = 0;
    for (int s = 0; s < k; s++) {
        if (leaf[s] < 0) continue;
        int l = 0;
        for (int x = leaf[s]; parent[x] >= 0; x = parent[x]) l++;
        len[s] = l;
        if (l > maxl) maxl = l;
    }
    return maxl;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s CKPT...\n", argv[0]); return 2; }
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    double tot[9][6] = {{0}};   /* per b: bound, packed, range, huffman, min(packed, range), min(all three) */
    printf("%-28s %2s %7s %9s %9s %9s %9s %6s %s\n", "tensor", "b", "kept", "bound", "packed", "range", "huffman", "maxlen",
           "huffman/range");
    for (int a = 1; a < argc; a++) {
        rf_ckpt *c;
        if (rf_ckpt_read(&ctx, argv[a], &c)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
        for (int i = 0; i < c->n; i++) {
            const rf_ckpt_tensor *t = &c->t[i];
            if (t->ndim < 2) continue;
            float *w;
            if (rf_ckpt_tensor_to_f32(&ctx, t, &w)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
            size_t n = (size_t)rf_ckpt_tensor_numel(t);
            uint8_t *idx = malloc(n);
            uint16_t *sym = malloc(n * sizeof *sym);
            for (int b = 2; b <= 8; b++) {
                float cb[256];
                rf_kmeans_info info;
                if (rf_kmeans_share(&ctx, w, t->mask, n, b, 0, cb, idx, &info)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
                size_t m = 0;
                uint64_t cnt[256] = {0};
                for (size_t j = 0; j < n; j++) if (!t->mask || t->mask[j]) { sym[m++] = idx[j]; cnt[idx[j]]++; }
                const int k = 1 << b;
                double bound = 0;
                for (int s = 0; s < k; s++) if (cnt[s]) bound -= (double)cnt[s] * log2((double)cnt[s] / (double)m);
                bound /= 8;
                unsigned char *o; size_t ol;
                if (rf_sym_encode(&ctx, sym, m, (unsigned)k, &o, &ol)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
                rf_free(o);
                int len[256];
                int maxl = huffman_lengths(cnt, k, len);
                uint64_t bits = 0;
                int present = 0;
                for (int s = 0; s < k; s++) { bits += cnt[s] * (uint64_t)len[s]; present += cnt[s] != 0; }
                double table = fmin(k / 2.0, k / 8.0 + present / 2.0);
                double huff = ceil(table) + (double)((bits + 7) / 8);
                double packed = (double)((m * (size_t)b + 7) / 8);
                printf("%-28s %2d %7zu %9.0f %9.0f %9zu %9.0f %6d %.3f\n", t->name, b, m, bound, packed, ol, huff, maxl, huff / (double)ol);
                tot[b][0] += bound; tot[b][1] += packed; tot[b][2] += (double)ol; tot[b][3] += huff;
                tot[b][4] += fmin(packed, (double)ol);
                tot[b][5] += fmin(fmin(packed, (double)ol), huff);
            }
            free(idx); free(sym); rf_free(w);
        }
        rf_ckpt_free(c);
    }
    /* "container": what the checkpoint keeps per tensor today (the smaller
     * of packing and the range code); "+huffman": with Huffman as a third
     * candidate. */
    printf("\ntotals over all tensors\n%2s %9s %9s %9s %9s %s %10s %10s %s\n", "b", "bound", "packed", "range", "huffman",
           "huffman/range", "container", "+huffman", "saved");
    for (int b = 2; b <= 8; b++)
        printf("%2d %9.0f %9.0f %9.0f %9.0f %13.3f %10.0f %10.0f %.2f%%\n", b, tot[b][0], tot[b][1], tot[b][2], tot[b][3],
               tot[b][3] / tot[b][2], tot[b][4], tot[b][5], 100.0 * (tot[b][4] - tot[b][5]) / tot[b][4]);
    return 0;
}
