/* Structured against unstructured latency, side by side in one run
 * (docs/kernels.md, "Structured vs unstructured sparsity"): each checkpoint
 * is loaded and timed at batch 1 and 128 in three forms:
 *   dense     plain sgemm on its weights (zeros multiplied like any value);
 *   deployed  as a sweep's finish step deploys it (rf_deploy_model, AUTO:
 *             per site and per batch (one sample / the batch) the sparse or
 *             N:M kernel where calibration measures it faster, sgemm
 *             otherwise); a model without zero weights is its dense form;
 *   kernel    the sparse kernel forced on every site (RF_DEPLOY_SPARSE: the
 *             N:M kernel on N:M weights, the unstructured one elsewhere),
 *             to show what the kernel itself costs where calibration
 *             declines it.
 * Rounds alternate between the checkpoints so that load on the shared
 * machine hits all of them alike; each number is the best of 7 samples of
 * >= 20 ms of thread CPU time (model_bench.h), the table reports the median
 * over rounds and the JSON lines min and max too (the noise). Speed-ups are
 * against the dense form of the first checkpoint of the same model: labels
 * "MODEL WHAT" group by their first word ("resnet-20 dense", "resnet-20
 * 2:4"), each column's deployed time against its dense time. Accuracies are the task's own, read from metrics.json beside the
 * checkpoint (test and validation split of the saved model; "-" without).
 *   OPENBLAS_NUM_THREADS=1 bench/cbench.sh bench/struct/latency.c ROUNDS DATA LABEL=CKPT ...
 * DATA: a dataset spec whose first test samples are the inputs. Engine
 * options come from the environment (docs/engine.md). Prints a markdown
 * table and one JSON line per checkpoint. */
#include "../deploy/model_bench.h"
#include "raffle/ckpt.h"
#include "raffle/data.h"
#include "raffle/train.h"
#include "raffle/engine.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAXB = 128, MAXC = 12, MAXR = 15, NT = 6 };
/* timing slots: dense b=1, dense b=128, deployed b=1, b=128, kernel b=1, b=128 */
static const char *const slot_name[NT] = {"dense_b1", "dense_b128", "deployed_b1", "deployed_b128", "kernel_b1", "kernel_b128"};

static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, dcmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The number `key` of metrics.json beside checkpoint `ckpt`; -1 when absent. */
static double record_number(rf_ctx *ctx, const char *ckpt, const char *key) {
    char path[4096];
    const char *slash = strrchr(ckpt, '/');
    int dir = slash ? (int)(slash - ckpt) : 1;
    snprintf(path, sizeof path, "%.*s/metrics.json", dir, slash ? ckpt : ".");
    unsigned char *buf = NULL;
    size_t n = 0;
    if (rf_read_file(ctx, path, &buf, &n)) return -1.0;
    cJSON *j = cJSON_ParseWithLength((const char *)buf, n);
    rf_free(buf);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    double r = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
    cJSON_Delete(j);
    return r;
}

/* Times the forward at batch 1 and MAXB into t[0], t[1]; with mode other than
 * DENSE the model is deployed first (counting the sites that run a sparse
 * kernel for one sample into *at1, for the batch into *atb, N:M ones into *nm). */
static int time_form(rf_ctx *ctx, rf_model *m, const float *x, rf_deploy_mode mode, double *t, int *at1, int *atb, int *nm) {
    if (mode != RF_DEPLOY_DENSE) {
        rf_deploy_opts o;
        rf_deploy_opts_default(&o);
        o.batch = MAXB;
        o.mode = mode;
        rf_deploy_layer info[512];
        int ni = 0;
        if (rf_deploy_model(ctx, m, &o, info, 512, &ni)) { fprintf(stderr, "%s\n", rf_ctx_error(ctx)); return 1; }
        *at1 = *atb = *nm = 0;
        for (int i = 0; i < ni; i++) {
            *at1 += info[i].sparse_at_1;
            *atb += info[i].sparse_at_batch;
            *nm += info[i].sparse && info[i].nm;
        }
    }
    t[0] = time_forward(ctx, m, x, 1);
    t[1] = time_forward(ctx, m, x, MAXB);
    if (mode != RF_DEPLOY_DENSE) rf_deploy_release(m);
    return 0;
}

static void acc_cell(char *out, size_t n, double a) {
    if (a < 0) snprintf(out, n, "-");
    else snprintf(out, n, "%.2f%%", 100 * a);
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: latency ROUNDS DATA LABEL=CKPT ...\n"); return 2; }
    int rounds = atoi(argv[1]), nc = argc - 3;
    if (rounds < 1 || rounds > MAXR || nc > MAXC) { fprintf(stderr, "1 <= ROUNDS <= %d, at most %d checkpoints\n", MAXR, MAXC); return 2; }
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    if (rf_engine_from_env(&ctx, &ctx.engine)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
    rf_dataset *tr = NULL, *te = NULL;
    if (rf_data_load(&ctx, argv[2], &tr, &te)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
    if (te->n < MAXB) { fprintf(stderr, "%s: %lld test samples, need %d\n", argv[2], (long long)te->n, MAXB); return 1; }
    static double t[MAXC][NT][MAXR];
    rf_model *m[MAXC];
    const char *label[MAXC];
    double sparsity[MAXC], test_acc[MAXC], val_acc[MAXC];
    size_t nonzero[MAXC];
    int sites1[MAXC], sitesb[MAXC], nm_sites[MAXC], kernel_sites[MAXC], kernel_nm[MAXC], unused;
    for (int c = 0; c < nc; c++) {
        char *eq = strchr(argv[3 + c], '=');
        if (!eq) { fprintf(stderr, "expected LABEL=CKPT: %s\n", argv[3 + c]); return 2; }
        *eq = '\0';
        label[c] = argv[3 + c];
        if (rf_model_load(&ctx, eq + 1, &m[c])) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
        size_t tot = 0, z = 0;
        for (int p = 0; p < m[c]->n_ptensors; p++)
            if (m[c]->ptensors[p].prunable)
                for (size_t k = 0; k < m[c]->ptensors[p].numel; k++) { tot++; z += m[c]->params[m[c]->ptensors[p].offset + k] == 0.0f; }
        sparsity[c] = tot ? (double)z / (double)tot : 0.0;
        nonzero[c] = tot - z;
        test_acc[c] = record_number(&ctx, eq + 1, "test_accuracy");
        val_acc[c] = record_number(&ctx, eq + 1, "val_accuracy");
        sites1[c] = sitesb[c] = nm_sites[c] = kernel_sites[c] = kernel_nm[c] = 0;
    }
    size_t ss = (size_t)te->c * te->h * te->w;
    float *x = malloc(sizeof(float) * ss * MAXB);
    if (!x) return 1;
    memcpy(x, te->x, sizeof(float) * ss * MAXB);
    for (int r = 0; r < rounds; r++)
        for (int c = 0; c < nc; c++) {
            double v[2];
            if (time_form(&ctx, m[c], x, RF_DEPLOY_DENSE, v, NULL, NULL, NULL)) return 1;
            t[c][0][r] = t[c][2][r] = t[c][4][r] = v[0];
            t[c][1][r] = t[c][3][r] = t[c][5][r] = v[1];
            if (sparsity[c] == 0.0) continue;
            if (time_form(&ctx, m[c], x, RF_DEPLOY_AUTO, v, &sites1[c], &sitesb[c], &nm_sites[c])) return 1;
            t[c][2][r] = v[0];
            t[c][3][r] = v[1];
            if (time_form(&ctx, m[c], x, RF_DEPLOY_SPARSE, v, &unused, &kernel_sites[c], &kernel_nm[c])) return 1;
            t[c][4][r] = v[0];
            t[c][5][r] = v[1];
        }
    int ref[MAXC];   /* the first checkpoint whose label starts with the same word */
    for (int c = 0; c < nc; c++) {
        size_t w = strcspn(label[c], " ");
        ref[c] = c;
        for (int q = 0; q < c && ref[c] == c; q++)
            if (strcspn(label[q], " ") == w && strncmp(label[q], label[c], w) == 0) ref[c] = q;
    }
    double med[MAXC][NT], lo[MAXC][NT], hi[MAXC][NT];
    for (int c = 0; c < nc; c++)
        for (int k = 0; k < NT; k++) {
            med[c][k] = median(t[c][k], rounds);   /* sorts: [0] min, [rounds-1] max */
            lo[c][k] = t[c][k][0];
            hi[c][k] = t[c][k][rounds - 1];
        }
    printf("| model | parameters | nonzero weights | MACs | test acc. (val.) | dense ms b=1 | dense ms b=128 | deployed ms b=1 | deployed ms b=128 | "
           "kernel forced ms b=1 | kernel forced ms b=128 | speed-up b=1 | speed-up b=128 |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (int c = 0; c < nc; c++) {
        char ta[32], va[32];
        acc_cell(ta, sizeof ta, test_acc[c]);
        acc_cell(va, sizeof va, val_acc[c]);
        printf("| %s | %zu | %zu (%.1f%% zero) | %.2fM | %s (%s) | %.3f | %.2f | %.3f | %.2f |", label[c], m[c]->n_params, nonzero[c],
               100 * sparsity[c], rf_model_flops(m[c]) / 1e6, ta, va, 1e3 * med[c][0], 1e3 * med[c][1], 1e3 * med[c][2],
               1e3 * med[c][3]);
        if (sparsity[c] > 0.0) printf(" %.3f | %.2f |", 1e3 * med[c][4], 1e3 * med[c][5]);
        else printf(" - | - |");
        printf(" %.2fx | %.2fx |\n", med[ref[c]][0] / med[c][2], med[ref[c]][1] / med[c][3]);
    }
    for (int c = 0; c < nc; c++) {
        printf("{\"label\":\"%s\",\"parameters\":%zu,\"nonzero_weights\":%zu,\"flops\":%.0f,\"zero_fraction\":%.6f,"
               "\"test_accuracy\":%.4f,\"val_accuracy\":%.4f,\"rounds\":%d,\"batch\":%d",
               label[c], m[c]->n_params, nonzero[c], rf_model_flops(m[c]), sparsity[c], test_acc[c], val_acc[c], rounds, MAXB);
        for (int k = 0; k < NT; k++)
            printf(",\"%s_ms\":[%.5f,%.5f,%.5f]", slot_name[k], 1e3 * lo[c][k], 1e3 * med[c][k], 1e3 * hi[c][k]);
        printf(",\"deployed_sparse_sites_b1\":%d,\"deployed_sparse_sites_b128\":%d,\"deployed_nm_sites\":%d,\"kernel_sites\":%d,"
               "\"kernel_nm_sites\":%d}\n",
               sites1[c], sitesb[c], nm_sites[c], kernel_sites[c], kernel_nm[c]);
    }
    free(x);
    for (int c = 0; c < nc; c++) rf_model_free(m[c]);
    rf_dataset_free(tr);
    rf_dataset_free(te);
    return 0;
}
