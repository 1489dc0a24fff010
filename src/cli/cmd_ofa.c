/* raffle ofa: the whole Prune-Once-For-All pipeline (Zafrir et al. 2021) for
 * one model, as a chain of task kinds, each writing OUT/<stage>/model.rckpt:
 *
 *   teacher              "train" on the upstream data (dense teacher)
 *   sparse               "ofa-sparse": GMP to --sparsity + KD from teacher
 *   <ds>/teacher         "train" from teacher, fine-tuned on downstream <ds>
 *   <ds>/transfer        "ofa-transfer": parents sparse, <ds>/teacher
 *   <ds>/qat             "ofa-qat": parents <ds>/transfer, <ds>/teacher
 *
 * The JSON output lists every stage's metrics; its top-level accuracy,
 * sparsity and bytes are those of the last downstream dataset's int8 model. */
#include "cli/cli.h"
#include "raffle/data.h"
#include "raffle/distill.h"

#include <stdio.h>
#include <string.h>

/* Called directly so the linker pulls the kinds out of libraffle.a. */
rf_status rf_task_train(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);

#define MAX_DS 8

typedef struct ds_entry { char name[128]; rf_dataset *train, *test; rf_dataset head; } ds_entry;

typedef struct ofa_run {
    rf_ctx     ctx;
    const char *model, *out, *layers;
    int        batch, threads;
    double     lr, sparsity;
    int64_t    eval_limit, train_limit;
    uint64_t   seed;
    ds_entry   ds[MAX_DS];
    int        n_ds;
    cJSON     *stages;   /* array of stage records */
} ofa_run;

static rf_status get_data(ofa_run *r, const char *name, ds_entry **out) {
    *out = NULL;
    for (int i = 0; i < r->n_ds; i++) if (strcmp(r->ds[i].name, name) == 0) { *out = &r->ds[i]; return RF_OK; }
    if (r->n_ds == MAX_DS) return rf_error(&r->ctx, RF_ERR_INVALID, "ofa: too many datasets");
    ds_entry *e = &r->ds[r->n_ds];
    snprintf(e->name, sizeof e->name, "%s", name);
    RF_TRY(rf_data_load(&r->ctx, name, &e->train, &e->test));
    e->head = *e->train;
    if (r->train_limit > 0 && r->train_limit < e->train->n) e->head = rf_dataset_head(e->train, r->train_limit);
    r->n_ds++;
    *out = e;
    return RF_OK;
}

typedef rf_status (*kind_fn)(rf_ctx *, const rf_task_io *, cJSON *);

/* Runs one stage: settings = common keys + (key, value) extras. */
static rf_status stage(ofa_run *r, const char *label, const char *kind, kind_fn fn, const char *data, int epochs,
                       int64_t iterations, const char *const *parents, int n_parents, double lr, cJSON **metrics_out) {
    char dir[4096];
    if ((size_t)snprintf(dir, sizeof dir, "%s/%s", r->out, label) >= sizeof dir)
        return rf_error(&r->ctx, RF_ERR_INVALID, "ofa: output path too long");
    RF_TRY(rf_mkdirs(&r->ctx, dir));
    ds_entry *d = NULL;
    RF_TRY(get_data(r, data, &d));
    cJSON *st = cJSON_CreateObject();
    cJSON *metrics = cJSON_CreateObject();
    if (!st || !metrics) { cJSON_Delete(st); cJSON_Delete(metrics); return rf_error(&r->ctx, RF_ERR_NOMEM, "ofa: settings"); }
    cJSON_AddStringToObject(st, "kind", kind);
    cJSON_AddStringToObject(st, "data", data);
    cJSON_AddStringToObject(st, "model", r->model);
    if (iterations > 0) cJSON_AddNumberToObject(st, "iterations", (double)iterations);
    else cJSON_AddNumberToObject(st, "epochs", epochs);
    cJSON_AddNumberToObject(st, "batch", r->batch);
    cJSON_AddNumberToObject(st, "lr", lr);
    cJSON_AddNumberToObject(st, "seed", (double)r->seed);
    cJSON_AddNumberToObject(st, "sparsity", r->sparsity);
    if (r->layers) cJSON_AddStringToObject(st, "layers", r->layers);
    if (r->eval_limit > 0) cJSON_AddNumberToObject(st, "eval_limit", (double)r->eval_limit);
    rf_task_io io;
    memset(&io, 0, sizeof io);
    io.settings = st;
    io.n_parents = n_parents;
    io.parent_ckpts = parents;
    io.out_dir = dir;
    io.train = &d->head;
    io.test = d->test;
    io.log = cli_log;
    if (iterations > 0) fprintf(stderr, "raffle ofa: stage %s (%s on %s, %lld steps)\n", label, kind, data, (long long)iterations);
    else fprintf(stderr, "raffle ofa: stage %s (%s on %s, %d epochs)\n", label, kind, data, epochs);
    rf_status s = fn(&r->ctx, &io, metrics);
    cJSON_Delete(st);
    if (s != RF_OK) { cJSON_Delete(metrics); rf_error_prefix(&r->ctx, "stage %s", label); return s; }
    cJSON_AddStringToObject(metrics, "stage", label);
    cJSON_AddStringToObject(metrics, "kind", kind);
    cJSON_AddStringToObject(metrics, "data", data);
    cJSON_AddStringToObject(metrics, "dir", dir);
    cJSON_AddItemToArray(r->stages, metrics);
    if (metrics_out) *metrics_out = metrics;
    return RF_OK;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

int rf_cmd_ofa(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *upstream = "fashion-mnist", *downstream = "mnist,fashion-mnist", *layers = NULL;
    int teacher_epochs = 10, sparse_epochs = 10, transfer_epochs = 3, qat_epochs = 1, json = 0, threads = 1, batch = 128;
    double lr = 1e-3, qat_lr = 1e-4, sparsity = 0.9, transfer_lr = 0;
    int64_t eval_limit = 0, train_limit = 0, transfer_iters = 0, qat_iters = 0;
    uint64_t seed = 0;
    const cli_opt opts[] = {
        {"model", CLI_STR, &model, "PRESET", "lenet-5, vit-tiny, or any preset/spec", 1},
        {"upstream", CLI_STR, &upstream, "D", "upstream dataset (default fashion-mnist)", 0},
        {"downstream", CLI_STR, &downstream, "D1,D2", "downstream datasets (default mnist,fashion-mnist)", 0},
        {"sparsity", CLI_DOUBLE, &sparsity, "S", "target sparsity of the sparse pre-training (default 0.9)", 0},
        {"layers", CLI_STR, &layers, "GLOBS", "tensors to prune, e.g. '!conv1*' keeps the input layer dense (default: all but the classifier)", 0},
        {"teacher-epochs", CLI_INT, &teacher_epochs, "N", "dense upstream teacher epochs (default 10)", 0},
        {"sparse-epochs", CLI_INT, &sparse_epochs, "N", "sparse pre-training epochs (default 10)", 0},
        {"transfer-epochs", CLI_INT, &transfer_epochs, "N", "downstream teacher and transfer epochs (default 3)", 0},
        {"qat-epochs", CLI_INT, &qat_epochs, "N", "QAT epochs (default 1)", 0},
        {"transfer-iterations", CLI_I64, &transfer_iters, "N", "downstream teacher and transfer: N steps on every dataset", 0},
        {"qat-iterations", CLI_I64, &qat_iters, "N", "QAT: N steps on every dataset", 0},
        {"lr", CLI_DOUBLE, &lr, "LR", "learning rate of the training stages (default 1e-3, Adam, cosine)", 0},
        {"transfer-lr", CLI_DOUBLE, &transfer_lr, "LR", "learning rate of the pattern-locked transfer (default lr/2, as the downstream teachers)", 0},
        {"qat-lr", CLI_DOUBLE, &qat_lr, "LR", "QAT learning rate (default 1e-4)", 0},
        {"batch", CLI_INT, &batch, "B", "batch size (default 128)", 0},
        {"eval-limit", CLI_I64, &eval_limit, "N", "evaluate on at most N test samples", 0},
        {"train-limit", CLI_I64, &train_limit, "N", "train on the first N samples of each dataset (short runs)", 0},
        {"seed", CLI_U64, &seed, "S", "seed of every stage (default 0)", 0},
        {"out-dir", CLI_STR, &out, "DIR", "DIR/<stage>/model.rckpt for every stage", 1},
        {"threads", CLI_INT, &threads, "N", "BLAS threads (default 1)", 0},
        {"json", CLI_FLAG, &json, NULL, "print every stage's metrics as one JSON object", 0},
        {0},
    };
    int done;
    int rc = cli_parse("ofa", "--model PRESET --out-dir DIR [options]",
                       "Prune Once For All (Zafrir et al. 2021): teacher, sparse pre-training, transfer, QAT int8.",
                       opts, argc, argv, NULL, 0, 0, &done);
    if (rc || done) return rc;
    if (!(sparsity >= 0 && sparsity < 1)) { cli_err("ofa", "--sparsity must be in [0, 1)"); return 2; }
    if (!(transfer_lr >= 0 && transfer_lr < 10)) { cli_err("ofa", "--transfer-lr must be a positive learning rate"); return 2; }
    if (teacher_epochs < 1 || sparse_epochs < 1 || transfer_epochs < 1 || qat_epochs < 1) {
        cli_err("ofa", "every stage needs at least one epoch");
        return 2;
    }
    cli_set_threads(threads);
    ofa_run r;
    memset(&r, 0, sizeof r);
    rf_ctx_init(&r.ctx);
    r.model = model; r.out = out; r.layers = layers; r.batch = batch; r.lr = lr; r.sparsity = sparsity;
    r.eval_limit = eval_limit; r.train_limit = train_limit; r.seed = seed;
    r.stages = cJSON_CreateArray();
    char ds_buf[1024];
    if (strlen(downstream) >= sizeof ds_buf) { cli_err("ofa", "--downstream list too long"); return 2; }
    strcpy(ds_buf, downstream);

    char teacher[4096], sparse[4096];
    snprintf(teacher, sizeof teacher, "%s/teacher/model.rckpt", out);
    snprintf(sparse, sizeof sparse, "%s/sparse/model.rckpt", out);
    cJSON *last = NULL;
    rf_status s = r.stages ? rf_mkdirs(&r.ctx, out) : rf_error(&r.ctx, RF_ERR_NOMEM, "ofa");
    if (s == RF_OK) s = stage(&r, "teacher", "train", rf_task_train, upstream, teacher_epochs, 0, NULL, 0, lr, NULL);
    const char *p1[1] = {teacher};
    if (s == RF_OK) s = stage(&r, "sparse", "ofa-sparse", rf_task_ofa_sparse, upstream, sparse_epochs, 0, p1, 1, lr, NULL);
    for (char *save = NULL, *d = strtok_r(ds_buf, ",", &save); s == RF_OK && d; d = strtok_r(NULL, ",", &save)) {
        char lt[256], ltr[256], lq[256], dt[4096], dtr[4096];
        snprintf(lt, sizeof lt, "%s/teacher", d);
        snprintf(ltr, sizeof ltr, "%s/transfer", d);
        snprintf(lq, sizeof lq, "%s/qat", d);
        snprintf(dt, sizeof dt, "%s/%s/model.rckpt", out, lt);
        snprintf(dtr, sizeof dtr, "%s/%s/model.rckpt", out, ltr);
        /* the downstream teacher: the dense upstream teacher fine-tuned on d */
        s = stage(&r, lt, "train", rf_task_train, d, transfer_epochs, transfer_iters, p1, 1, lr * 0.5, NULL);
        const char *p2[2] = {sparse, dt};
        if (s == RF_OK) s = stage(&r, ltr, "ofa-transfer", rf_task_ofa_transfer, d, transfer_epochs, transfer_iters, p2, 2,
                                 transfer_lr > 0 ? transfer_lr : lr * 0.5, NULL);
        const char *p3[2] = {dtr, dt};
        if (s == RF_OK) s = stage(&r, lq, "ofa-qat", rf_task_ofa_qat, d, qat_epochs, qat_iters, p3, 2, qat_lr, &last);
    }
    for (int i = 0; i < r.n_ds; i++) { rf_dataset_free(r.ds[i].train); rf_dataset_free(r.ds[i].test); }
    if (s != RF_OK) { cJSON_Delete(r.stages); return cli_fail("ofa", &r.ctx, s); }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model);
        cJSON_AddNumberToObject(o, "target_sparsity", sparsity);
        cJSON_AddNumberToObject(o, "accuracy", last ? num(last, "accuracy") : 0.0);
        cJSON_AddNumberToObject(o, "sparsity", last ? num(last, "sparsity") : 0.0);
        cJSON_AddNumberToObject(o, "bytes", last ? num(last, "bytes") : 0.0);
        cJSON_AddNumberToObject(o, "dense_bytes", last ? num(last, "dense_bytes") : 0.0);
        cJSON_AddNumberToObject(o, "compression_ratio", last ? num(last, "compression_ratio") : 0.0);
        cJSON_AddItemToObject(o, "stages", r.stages);
        cli_print_json(o);
    } else {
        const cJSON *e;
        printf("%-24s %-13s %-14s %9s %9s %10s %8s\n", "stage", "kind", "data", "accuracy", "sparsity", "bytes", "ratio");
        cJSON_ArrayForEach(e, r.stages) {
            printf("%-24s %-13s %-14s %9.4f %9.4f %10.0f %8.2f\n", cJSON_GetObjectItem(e, "stage")->valuestring,
                   cJSON_GetObjectItem(e, "kind")->valuestring, cJSON_GetObjectItem(e, "data")->valuestring,
                   num(e, "accuracy"), num(e, "sparsity"), num(e, "bytes"), num(e, "compression_ratio"));
        }
        cJSON_Delete(r.stages);
    }
    return 0;
}
